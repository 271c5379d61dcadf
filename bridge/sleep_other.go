//go:build !linux

package bridge

import (
	"context"
	"errors"
	"time"
)

// sleeper wakes a mixer loop at an absolute time with a time.Timer; raised
// priorities are Linux only.
type sleeper struct{ timer timerSleeper }

func newSleeper(want Priority) (*sleeper, error) {
	if want > PriorityNormal {
		return &sleeper{}, errors.New("mixer priority: not supported on this system")
	}
	return &sleeper{}, nil
}

func (s *sleeper) until(ctx context.Context, t time.Time) bool { return s.timer.until(ctx, t) }
func (s *sleeper) demote() bool                                { return false }
func (s *sleeper) close()                                      { s.timer.close() }
