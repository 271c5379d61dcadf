package slowfs

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func mount(t *testing.T) *FS {
	t.Helper()
	f, err := Mount(t.TempDir(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Unmount(); err != nil {
			t.Error(err)
		}
	})
	return f
}

// TestSlowAndStalledWrites: a write waits the delay; a stalled write
// returns only once released.
func TestSlowAndStalledWrites(t *testing.T) {
	f := mount(t)
	fh, err := os.Create(filepath.Join(f.Dir, "x"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	f.Gate.SetDelay(200 * time.Millisecond)
	t0 := time.Now()
	if _, err := fh.Write([]byte("slow")); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < 200*time.Millisecond {
		t.Errorf("a slow write took %v", d)
	}
	f.Gate.SetDelay(0)
	f.Gate.Stall()
	done := make(chan error, 1)
	go func() {
		_, err := fh.Write([]byte("stalled"))
		if err == nil {
			err = fh.Sync()
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("a stalled write returned: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	f.Gate.Release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the write stayed stalled after the release")
	}
	if w, s, waited := f.Gate.Counts(); w < 2 || s < 1 || waited < 2 {
		t.Errorf("counts: %d writes, %d fsyncs, %d waited", w, s, waited)
	}
}
