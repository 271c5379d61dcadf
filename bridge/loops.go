package bridge

import "sync"

// loopGroup counts the running mixer loops (clock shards and big rooms'
// own loops) so that HangupAll can wait for them to stop. Unlike a
// sync.WaitGroup it may gain a loop while someone waits — a call dialled
// or parked from a background goroutine can start a clock just as a
// shutdown begins — and the waiter then simply waits for that one too.
type loopGroup struct {
	mu   sync.Mutex
	n    int
	zero *sync.Cond
}

func (g *loopGroup) add() {
	g.mu.Lock()
	g.n++
	g.mu.Unlock()
}

func (g *loopGroup) done() {
	g.mu.Lock()
	g.n--
	if g.n == 0 && g.zero != nil {
		g.zero.Broadcast()
	}
	g.mu.Unlock()
}

// wait returns once no loop runs.
func (g *loopGroup) wait() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.zero == nil {
		g.zero = sync.NewCond(&g.mu)
	}
	for g.n > 0 {
		g.zero.Wait()
	}
}
