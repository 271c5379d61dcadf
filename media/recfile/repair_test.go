package recfile

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// TestRepairWAV: a WAV file left with "to the end" sizes gets its real
// ones; a file that is not a canonical WAV, or shorter than a header, is
// a clear error and is left alone.
func TestRepairWAV(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.wav")
	data := append(wavHeader(8000, 0xFFFFFFFF-wavHeaderLen), make([]byte, 1600)...)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := RepairWAV(path)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("repair: %d, %v", n, err)
	}
	b, _ := os.ReadFile(path)
	if binary.LittleEndian.Uint32(b[40:]) != 1600 || binary.LittleEndian.Uint32(b[4:]) != 1600+36 || binary.LittleEndian.Uint32(b[24:]) != 8000 {
		t.Errorf("header after repair: % x", b[:44])
	}
	for name, body := range map[string][]byte{"short.wav": []byte("RIFF"), "text.wav": make([]byte, 100), "empty.wav": nil} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, body, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := RepairWAV(p); err == nil {
			t.Errorf("%s: repaired", name)
		}
		if b, _ := os.ReadFile(p); len(b) != len(body) {
			t.Errorf("%s: changed to %d bytes", name, len(b))
		}
	}
	if _, err := RepairWAV(filepath.Join(dir, "missing.wav")); err == nil {
		t.Error("a missing file repaired")
	}
}
