// Package tts renders text to speech with the espeak-ng program, as 16 kHz
// mono int16 PCM ready for the conference mixer ([SpeechRate]).
//
// Catapult's speak parameters (gender, locale, voice) are mapped onto
// espeak-ng languages and voice variants by [VoiceFor]. Text goes to
// espeak-ng on standard input, never on the command line, so nothing in it
// can be read as an option. Results are kept in a small LRU cache keyed on
// voice and text, since conferences tend to repeat the same prompts.
package tts

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"chorus/media/audiofile"
)

// MaxSentence is the longest text, in characters (Unicode code points),
// that Speak accepts; Catapult documents the same limit for "sentence".
const MaxSentence = 1000

// Engine defaults.
const (
	// DefaultBinary is the program Speak runs, looked up in PATH.
	DefaultBinary = "espeak-ng"
	// DefaultCacheEntries is the size of the speech cache.
	DefaultCacheEntries = 64
	// DefaultTimeout bounds one run of espeak-ng.
	DefaultTimeout = 30 * time.Second
)

// SpeechRate is the rate of the speech Speak returns (unless espeak-ng
// writes 8 kHz or less, then its own). espeak-ng writes
// 22050 Hz; its formant synthesis puts next to nothing above 8 kHz, so
// 16 kHz keeps what wideband (G.722, Opus) listeners can hear of it at a
// third of the memory 48 kHz would take (the next mix rate up), and the
// cache holds three times as much speech. Narrowband rooms resample it
// to 8 kHz as they play it (bridge.Playback).
const SpeechRate = 16000

// maxWAVBytes caps espeak-ng's output: 1000 characters are about a minute
// and a half of 22050 Hz 16-bit speech, some 4 MB.
const maxWAVBytes = 32 << 20

// Errors returned by Speak.
var (
	// ErrEmptyText means the text is empty or only white space.
	ErrEmptyText = errors.New("tts: empty text")
	// ErrTooLong means the text has more than MaxSentence characters.
	ErrTooLong = errors.New("tts: text too long")
)

// Engine speaks text through the espeak-ng binary. The zero value is ready
// to use, with the defaults below; an Engine is safe for concurrent use as
// long as its exported fields are not changed once it is in use.
type Engine struct {
	// Binary is the espeak-ng program, a path or a name looked up in PATH.
	// Empty means DefaultBinary.
	Binary string
	// CacheEntries is the size of the LRU cache of rendered speech. Zero
	// means DefaultCacheEntries; negative turns the cache off.
	CacheEntries int
	// Timeout bounds one run of espeak-ng, on top of the caller's context.
	// Zero or negative means DefaultTimeout.
	Timeout time.Duration

	mu    sync.Mutex
	lru   *list.List               // of *cacheEntry, most recent first
	items map[string]*list.Element // by cache key
}

type cacheEntry struct {
	key string
	pcm audiofile.Audio
}

// New returns an Engine that runs binary ("" means DefaultBinary) with a
// cache of DefaultCacheEntries.
func New(binary string) *Engine {
	return &Engine{Binary: binary, CacheEntries: DefaultCacheEntries}
}

func (e *Engine) binary() string {
	if e.Binary == "" {
		return DefaultBinary
	}
	return e.Binary
}

// Available returns nil if the espeak-ng binary runs, and otherwise an
// error that says to install it.
func (e *Engine) Available() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, e.binary(), "--version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("tts: %s does not run (install espeak-ng, e.g. apt-get install espeak-ng): %w", e.binary(), err)
	}
	if !bytes.Contains(bytes.ToLower(out), []byte("speak")) {
		return fmt.Errorf("tts: %s --version printed %q, not espeak-ng's banner", e.binary(), firstLine(out))
	}
	return nil
}

// Speak renders text to mono int16 PCM at [SpeechRate].
//
// gender is "male" or "female" (default female, case-insensitive); locale
// is a Catapult locale such as "en_US", "en_UK"/"en_GB", "es", "es_MX",
// "fr_FR", "de_DE", "it_IT" or "pt_BR"; voice is a Catapult voice name such
// as "Susan", "Kate", "Julie", "Dave", "Paul", "Bridget", "Esperanza",
// "Violeta", "Jorge", "Jolie", "Bernard", "Katrin", "Stefan", "Paola" or
// "Luca", in any case. See [VoiceFor] for how they combine and for the
// fallbacks: an unknown locale speaks US English, an unknown voice uses
// the gender given.
//
// Text over [MaxSentence] characters fails with [ErrTooLong], blank text
// with [ErrEmptyText]. Invalid UTF-8 is replaced, not rejected. Canceling
// ctx kills espeak-ng and returns ctx's error. The caller owns the result.
func (e *Engine) Speak(ctx context.Context, text, gender, locale, voice string) (audiofile.Audio, error) {
	if n := utf8.RuneCountInString(text); n > MaxSentence {
		return audiofile.Audio{}, fmt.Errorf("%w: %d characters, limit %d", ErrTooLong, n, MaxSentence)
	}
	text = strings.ToValidUTF8(text, "\uFFFD")
	text = strings.ReplaceAll(text, "\x00", " ")
	if strings.TrimSpace(text) == "" {
		return audiofile.Audio{}, ErrEmptyText
	}
	v := VoiceFor(gender, locale, voice)
	key := v + "\x00" + text
	if pcm, ok := e.cached(key); ok {
		return pcm, nil
	}
	pcm, err := e.render(ctx, v, text)
	if err != nil {
		return audiofile.Audio{}, err
	}
	e.store(key, pcm)
	return audiofile.Audio{Samples: append([]int16(nil), pcm.Samples...), Rate: pcm.Rate}, nil
}

// render runs espeak-ng once.
func (e *Engine) render(ctx context.Context, voice, text string) (audiofile.Audio, error) {
	timeout := e.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// -b 1: the input is UTF-8. --stdin: read all of standard input as one
	// text (not line by line). --stdout: write a WAV file to standard output.
	cmd := exec.CommandContext(ctx, e.binary(), "-v", voice, "-b", "1", "--stdin", "--stdout")
	cmd.Stdin = strings.NewReader(text)
	stdout := &capped{max: maxWAVBytes}
	stderr := &capped{max: 4096}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = 2 * time.Second // do not wait on pipes a killed child left open
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return audiofile.Audio{}, fmt.Errorf("tts: espeak-ng stopped: %w", ctx.Err())
		}
		if stdout.over {
			return audiofile.Audio{}, fmt.Errorf("tts: espeak-ng wrote over %d bytes", maxWAVBytes)
		}
		return audiofile.Audio{}, fmt.Errorf("tts: %s: %w: %s", e.binary(), err, firstLine(stderr.buf.Bytes()))
	}
	// At most SpeechRate: a build of espeak-ng writing 8 kHz would give
	// 8 kHz, at its own band.
	pcm, err := audiofile.DecodeLimit(stdout.buf.Bytes(), 0, SpeechRate)
	if err != nil {
		return audiofile.Audio{}, fmt.Errorf("tts: decoding espeak-ng output: %w", err)
	}
	return pcm, nil
}

// capped is an io.Writer that keeps at most max bytes and fails past that.
type capped struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (c *capped) Write(p []byte) (int, error) {
	if c.buf.Len()+len(p) > c.max {
		c.over = true
		c.buf.Write(p[:c.max-c.buf.Len()])
		return 0, errors.New("tts: output too large")
	}
	return c.buf.Write(p)
}

func firstLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

func (e *Engine) cacheSize() int {
	if e.CacheEntries == 0 {
		return DefaultCacheEntries
	}
	return e.CacheEntries
}

// cached returns a copy of the cached PCM for key.
func (e *Engine) cached(key string) (audiofile.Audio, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	el, ok := e.items[key]
	if !ok {
		return audiofile.Audio{}, false
	}
	e.lru.MoveToFront(el)
	a := el.Value.(*cacheEntry).pcm
	return audiofile.Audio{Samples: append([]int16(nil), a.Samples...), Rate: a.Rate}, true
}

// store caches pcm under key, evicting the least recently used entries.
func (e *Engine) store(key string, pcm audiofile.Audio) {
	size := e.cacheSize()
	if size < 0 {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.lru == nil {
		e.lru, e.items = list.New(), make(map[string]*list.Element)
	}
	if el, ok := e.items[key]; ok {
		e.lru.MoveToFront(el)
		return
	}
	e.items[key] = e.lru.PushFront(&cacheEntry{key: key, pcm: pcm})
	for e.lru.Len() > size {
		last := e.lru.Back()
		e.lru.Remove(last)
		delete(e.items, last.Value.(*cacheEntry).key)
	}
}
