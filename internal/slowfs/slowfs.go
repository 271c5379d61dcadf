// Package slowfs is a test helper: a loopback FUSE file system, served
// from the calling process, whose writes and fsyncs can be made slow or
// stalled outright, to show that a process using it (the bridge's store
// and recordings) degrades without waiting on the disk where it must not.
//
// It mounts with mount(2) directly (fuse.MountOptions.DirectMount), so it
// needs root (or CAP_SYS_ADMIN) and /dev/fuse, but no fusermount.
//
// Serve it to another process (the binary under test), not to the process
// that serves it: a thread of the serving process that faults on a page
// of a file mapped from the mount (SQLite maps its -shm) waits for the
// serving goroutines, which a garbage collection's stop-the-world holds
// until that very thread stops: the process deadlocks, and cannot even
// exit. Plain reads and writes are system calls and are safe.
package slowfs

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Gate decides how long each write and fsync waits before it reaches the
// backing directory.
type Gate struct {
	mu      sync.Mutex
	delay   time.Duration
	stalled chan struct{} // non-nil while stalled; closed by Release

	writes, syncs, waited atomic.Uint64
}

// SetDelay makes every later write and fsync wait d first (0: none).
func (g *Gate) SetDelay(d time.Duration) {
	g.mu.Lock()
	g.delay = d
	g.mu.Unlock()
}

// Stall blocks every write and fsync from now until Release.
func (g *Gate) Stall() {
	g.mu.Lock()
	if g.stalled == nil {
		g.stalled = make(chan struct{})
	}
	g.mu.Unlock()
}

// Release ends a stall: the blocked operations go on (after the delay).
func (g *Gate) Release() {
	g.mu.Lock()
	if g.stalled != nil {
		close(g.stalled)
		g.stalled = nil
	}
	g.mu.Unlock()
}

// Counts returns the writes and fsyncs seen, and how many of them waited
// (a delay or a stall).
func (g *Gate) Counts() (writes, syncs, waited uint64) {
	return g.writes.Load(), g.syncs.Load(), g.waited.Load()
}

// wait holds an operation per the gate. A request the kernel interrupts
// (its process was killed) ends the wait with EINTR.
func (g *Gate) wait(ctx context.Context) syscall.Errno {
	g.mu.Lock()
	d, st := g.delay, g.stalled
	g.mu.Unlock()
	if d == 0 && st == nil {
		return 0
	}
	g.waited.Add(1)
	if st != nil {
		select {
		case <-st:
		case <-ctx.Done():
			return syscall.EINTR
		}
	}
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return syscall.EINTR
		}
	}
	return 0
}

// node is a loopback node whose files go through the gate.
type node struct {
	*fs.LoopbackNode
	g *Gate
}

var (
	_ fs.NodeWrapChilder = (*node)(nil)
	_ fs.NodeOpener      = (*node)(nil)
	_ fs.NodeCreater     = (*node)(nil)
)

// WrapChild makes every node below the root a gated one too.
func (n *node) WrapChild(_ context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	if l, ok := ops.(*fs.LoopbackNode); ok {
		return &node{LoopbackNode: l, g: n.g}
	}
	return ops
}

// Open opens the backing file behind the gate.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fl, errno := n.LoopbackNode.Open(ctx, flags)
	return n.wrap(fh), fl, errno
}

// Create creates the backing file behind the gate.
func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	in, fh, fl, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	return in, n.wrap(fh), fl, errno
}

func (n *node) wrap(fh fs.FileHandle) fs.FileHandle {
	if l, ok := fh.(*fs.LoopbackFile); ok {
		return &file{LoopbackFile: l, g: n.g}
	}
	return fh
}

// file is a loopback file whose writes and fsyncs wait at the gate.
type file struct {
	*fs.LoopbackFile
	g *Gate
}

// Write waits at the gate, then writes.
func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	f.g.writes.Add(1)
	if errno := f.g.wait(ctx); errno != 0 {
		return 0, errno
	}
	return f.LoopbackFile.Write(ctx, data, off)
}

// Fsync waits at the gate, then syncs.
func (f *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	f.g.syncs.Add(1)
	if errno := f.g.wait(ctx); errno != 0 {
		return errno
	}
	return f.LoopbackFile.Fsync(ctx, flags)
}

// PassthroughFd says no: a kernel with FUSE passthrough would otherwise
// send reads and writes straight to the backing file, past the gate.
func (f *file) PassthroughFd() (int, bool) { return -1, false }

// FS is a mounted slow file system.
type FS struct {
	// Dir is the mount point.
	Dir string
	// Gate slows or stalls its writes.
	Gate *Gate

	srv *fuse.Server
}

// Mount serves backing (an existing directory) at dir (an existing, empty
// directory) through a gate that lets everything through until told
// otherwise.
func Mount(dir, backing string) (*FS, error) {
	root, err := fs.NewLoopbackRoot(backing)
	if err != nil {
		return nil, fmt.Errorf("slowfs: %w", err)
	}
	g := &Gate{}
	rn := &node{LoopbackNode: root.(*fs.LoopbackNode), g: g}
	srv, err := fs.Mount(dir, rn, &fs.Options{MountOptions: fuse.MountOptions{
		DirectMount: true, FsName: "slowfs", Name: "slowfs",
		// The kernel's own lock table serves fcntl locks (SQLite's);
		// one process uses the database.
		EnableLocks: false,
	}})
	if err != nil {
		return nil, fmt.Errorf("slowfs: mount %s: %w", dir, err)
	}
	return &FS{Dir: dir, Gate: g, srv: srv}, nil
}

// Unmount releases any stall and unmounts; a busy mount is detached
// lazily.
func (f *FS) Unmount() error {
	f.Gate.Release()
	f.Gate.SetDelay(0)
	if err := f.srv.Unmount(); err != nil {
		if err2 := syscall.Unmount(f.Dir, syscall.MNT_DETACH); err2 != nil {
			return fmt.Errorf("slowfs: unmount %s: %w", f.Dir, err)
		}
	}
	f.srv.Wait()
	return nil
}
