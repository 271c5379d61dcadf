package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"chorus/bridge"
	"chorus/media/audiofile"
	"chorus/media/tts"
)

// What a caller to a room with a PIN is told (issue 11).
const (
	promptEnterPIN = "Please enter the conference PIN, followed by the pound key."
	promptWrongPIN = "That PIN is not correct. Please try again."
	promptGoodbye  = "Goodbye."
)

// pinPrompts renders the lobby's prompts with espeak-ng once, when the
// first caller to a room with a PIN arrives (a bridge that never sees one
// never runs espeak-ng for them), and falls back to the bridge's tone
// prompts when espeak-ng is missing or fails, so that a caller always hears
// something to answer.
type pinPrompts struct {
	speak func(ctx context.Context, text string) (audiofile.Audio, error)
	log   *slog.Logger
	once  sync.Once
	p     bridge.Prompts
}

func newPINPrompts(engine *tts.Engine, log *slog.Logger) *pinPrompts {
	return &pinPrompts{log: log, speak: func(ctx context.Context, text string) (audiofile.Audio, error) {
		return engine.Speak(ctx, text, "", "", "")
	}}
}

// get returns the prompts (bridge.Config.Prompts).
func (pp *pinPrompts) get() bridge.Prompts {
	pp.once.Do(func() { pp.p = pp.render() })
	return pp.p
}

func (pp *pinPrompts) render() bridge.Prompts {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var p bridge.Prompts
	for _, x := range []struct {
		dst  *[]int16
		text string
	}{{&p.EnterPIN, promptEnterPIN}, {&p.WrongPIN, promptWrongPIN}, {&p.Goodbye, promptGoodbye}} {
		pcm, err := pp.speak(ctx, x.text)
		if err == nil && p.Rate != 0 && pcm.Rate != p.Rate {
			err = fmt.Errorf("speech at %d Hz and %d Hz", p.Rate, pcm.Rate)
		}
		if err != nil || len(pcm.Samples) == 0 {
			pp.log.Warn("PIN prompts are tones: speech failed", "err", err)
			return bridge.TonePrompts()
		}
		*x.dst, p.Rate = pcm.Samples, pcm.Rate
	}
	return p
}
