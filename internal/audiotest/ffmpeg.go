package audiotest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os/exec"
	"strconv"
)

// DecodeFile decodes an audio file with ffmpeg (the reference other tools
// are checked against) to mono 16-bit PCM at rate Hz. A missing ffmpeg is
// an error, so that a test using it fails rather than passes unchecked.
func DecodeFile(path string, rate int) ([]int16, error) {
	var out, errOut bytes.Buffer
	cmd := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-i", path,
		"-f", "s16le", "-acodec", "pcm_s16le", "-ac", "1", "-ar", strconv.Itoa(rate), "-")
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("ffmpeg decode %s: %w: %s", path, err, errOut.String())
	}
	if errOut.Len() > 0 {
		return nil, fmt.Errorf("ffmpeg decode %s reported: %s", path, errOut.String())
	}
	b := out.Bytes()
	pcm := make([]int16, len(b)/2)
	for i := range pcm {
		pcm[i] = int16(binary.LittleEndian.Uint16(b[2*i:]))
	}
	return pcm, nil
}
