package sip

import (
	"context"
	"log/slog"

	"github.com/emiago/sipgo/sip"
)

// maxLoggedData bounds how much of a datagram a log line may carry.
const maxLoggedData = 200

// quietHandler tames sipgo's transport and transaction logging: a
// malformed datagram from the network is routine, not an error, so such
// records go to Debug, and any raw message data in them is cut short.
type quietHandler struct{ slog.Handler }

func (h quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.Handler.Enabled(ctx, slog.LevelDebug) || h.Handler.Enabled(ctx, l)
}

func (h quietHandler) Handle(ctx context.Context, r slog.Record) error {
	level := r.Level
	if level >= slog.LevelWarn {
		level = slog.LevelDebug // parse failures, stray responses: remote input
	}
	if !h.Handler.Enabled(ctx, level) {
		return nil
	}
	out := slog.NewRecord(r.Time, level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a.Value.Kind() == slog.KindString && len(a.Value.String()) > maxLoggedData {
			a.Value = slog.StringValue(a.Value.String()[:maxLoggedData] + "…")
		}
		out.AddAttrs(a)
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func (h quietHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return quietHandler{h.Handler.WithAttrs(as)}
}

func (h quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{h.Handler.WithGroup(name)}
}

// SetLibraryLogger routes sipgo's own logging (its package-level default
// logger, used by the transport and transaction layers) through log, with
// errors about remote input demoted to Debug and raw data truncated. Call
// it once at start-up, before New.
func SetLibraryLogger(log *slog.Logger) {
	sip.SetDefaultLogger(slog.New(quietHandler{log.Handler()}))
}
