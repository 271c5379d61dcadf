//go:build !linux

package opus

import "testing"

// cpuPerOp runs loop; only Linux reports per-thread CPU time.
func cpuPerOp(b *testing.B, unit string, loop func() int) { loop() }
