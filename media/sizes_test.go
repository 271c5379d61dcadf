package media

import (
	"testing"
	"unsafe"
)

// A G.711 call's media memory is these two allocations; each one byte
// past its size class costs every member of a 1000-member room the next
// class (9728 → 10240, 1408 → 1536 bytes). docs/performance.md keeps
// their history.
func TestPerCallSizeClasses(t *testing.T) {
	if n := unsafe.Sizeof(endpointState{}); n > 9728 {
		t.Errorf("endpointState is %d bytes, past its 9728-byte size class", n)
	}
	if n := unsafe.Sizeof(Session{}); n > 1408 {
		t.Errorf("Session is %d bytes, past its 1408-byte size class", n)
	}
}
