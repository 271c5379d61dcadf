// Package bridge is the domain of Chorus: conferences, their members, the
// calls that members are, and the mixer that gives every member the mix of
// everyone else.
//
// It knows neither SIP nor HTTP. What it needs of a call it declares as the
// small interface Leg, which package sip implements; what it tells the
// outside world it publishes as Events to an EventSink, which package api
// turns into HTTP callbacks.
//
// Every active conference is mixed on a 20 ms clock: small rooms share a few
// clock goroutines (one per GOMAXPROCS, each running the ticks of its rooms
// in turn, at phases spread over the 20 ms), and a room of 64 members or
// more gets a goroutine of its own. Each of those loops runs on a thread of
// its own at real-time priority where the system allows (see Priority).
//
// The mixer sees calls only as PCM frames: each member has an Endpoint
// (a *media.Endpoint for a call, which owns the RTP session, jitter
// buffer, codec and DTMF detector). A tick (Conference.mixTick) pulls
// every endpoint (Receive drains its socket without blocking into a
// receive buffer the tick's goroutine owns, its digits act, Pull gives the
// next frame), gates each frame (mic sensitivity), picks the loudest
// talkers, sums them in int32, and pushes every endpoint the sum minus its
// own contribution with its receive gain, through a soft limiter. A member
// whose output is the room's mix (not a talker, no audio of its own) gets
// a payload the mixer encoded once for every listener of the same codec
// and receive level, and for Opus the same encoder configuration
// (PushShared); the others get their own frame (Push). A tick allocates
// nothing in steady state, and tests step it in memory with endpoints of
// their own.
//
// A room mixes at the highest rate its members can hear (Endpoint.MaxRate:
// 8 kHz for G.711, 16 for G.722, 48 for Opus), capped by
// Config.MaxMixRate, and follows its members as they come and go (and
// every second, for re-INVITEs). Frames at the mix rate go in and out of
// every endpoint, which resamples to its codec, and the shared encoders
// band-limit the mix for narrowband listeners. An 8 kHz room takes none of
// those paths. The tick after a change of rate is mixed at both rates,
// and every endpoint and shared encoder hands over from the old path to
// the new (PullSwitch, PushSwitch, media.RateSwitcher), so that nobody
// hears a click.
package bridge
