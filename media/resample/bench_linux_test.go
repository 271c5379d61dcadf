package resample

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"syscall"
	"testing"
	"time"

	"chorus/internal/audiotest"
)

// threadCPU is the CPU time this OS thread has used so far
// (getrusage(RUSAGE_THREAD), Linux).
func threadCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkProcess converts one 20 ms frame of speech-level noise per
// operation, so ns/op is ns per frame. cpu-ns/frame is the CPU time of the
// benchmark's thread per frame: on a shared machine wall time also counts
// the time spent waiting for a core.
func BenchmarkProcess(b *testing.B) {
	for _, p := range pairs {
		b.Run(fmt.Sprintf("%dto%d", p[0]/1000, p[1]/1000), func(b *testing.B) {
			r, err := New(p[0], p[1])
			if err != nil {
				b.Fatal(err)
			}
			src := make([]int16, p[0]/50)
			dst := make([]int16, p[1]/50)
			audiotest.Noise(src, -20, rand.New(rand.NewPCG(1, 2)))
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			b.ReportAllocs()
			start := threadCPU()
			for b.Loop() {
				r.Process(dst, src)
			}
			b.ReportMetric(float64(threadCPU()-start)/float64(b.N), "cpu-ns/frame")
		})
	}
}

// BenchmarkNew measures building a resampler (designing its filters), which
// a media endpoint does when a call starts or its room changes rate.
func BenchmarkNew(b *testing.B) {
	for _, p := range [][2]int{{16000, 48000}, {48000, 8000}} {
		b.Run(fmt.Sprintf("%dto%d", p[0]/1000, p[1]/1000), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := New(p[0], p[1]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
