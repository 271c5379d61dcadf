package resample

import "errors"

// ErrRate means a sample rate other than 8000, 16000 or 48000 Hz.
var ErrRate = errors.New("resample: unsupported sample rate")
