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
// its own at real-time priority where the system allows (see Priority). A
// tick (Conference.mixTick) drains every member's RTP socket without blocking,
// feeds the jitter buffers and DTMF detectors, takes one frame from each
// member, gates it (mic sensitivity), picks the loudest talkers, sums them
// in int32, and sends each member the sum minus its own contribution with
// its receive gain, through a soft limiter, encoded in its codec. Members
// whose output is the same share one encoded payload. A tick allocates
// nothing in steady state.
package bridge
