package main

import (
	"log/slog"
	"testing"

	"chorus/bridge"
	"chorus/internal/audiotest"
	"chorus/media/tts"
)

// TestPINPromptsSpeak: with espeak-ng the prompts are speech, seconds of
// it where the tone prompts last a fraction of one. espeak-ng missing is a
// failure, not a skip.
func TestPINPromptsSpeak(t *testing.T) {
	engine := tts.New("")
	if err := engine.Available(); err != nil {
		t.Fatal(err)
	}
	p := newPINPrompts(engine, slog.New(slog.DiscardHandler)).get()
	for name, pcm := range map[string][]int16{"enter": p.EnterPIN, "wrong": p.WrongPIN, "goodbye": p.Goodbye} {
		if got := audiotest.RMSDBFS(pcm); got < -40 {
			t.Errorf("%s prompt at %.1f dBFS RMS: not speech", name, got)
		}
	}
	if p.Rate != tts.SpeechRate {
		t.Errorf("the prompts are at %d Hz, want %d (speech in HD)", p.Rate, tts.SpeechRate)
	}
	if d := len(p.EnterPIN) / (p.Rate / 1000); d < 1500 {
		t.Errorf("enter-PIN prompt lasts %d ms: not the sentence", d)
	}
}

// TestPINPromptsFallback: when espeak-ng does not run, the tone prompts
// play instead.
func TestPINPromptsFallback(t *testing.T) {
	p := newPINPrompts(tts.New("/nonexistent/espeak-ng"), slog.New(slog.DiscardHandler)).get()
	want := bridge.TonePrompts()
	if len(p.EnterPIN) != len(want.EnterPIN) || len(p.Goodbye) != len(want.Goodbye) || len(p.WrongPIN) != len(want.WrongPIN) {
		t.Errorf("fallback prompts are not the tone prompts")
	}
}
