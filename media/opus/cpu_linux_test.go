package opus

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// threadCPU returns the CPU time (user and system) of the calling thread,
// so benchmarks can report CPU per frame that does not grow when other
// processes share the machine. The caller must be locked to its thread.
func threadCPU(tb testing.TB) int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// cpuPerOp runs loop on a locked thread and reports its CPU time per
// iteration (loop returns how many it ran) as unit, beside the wall-clock
// ns/op.
func cpuPerOp(b *testing.B, unit string, loop func() int) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := threadCPU(b)
	n := loop()
	if n > 0 {
		b.ReportMetric(float64(threadCPU(b)-start)/float64(n), unit)
	}
}
