// Package opus encodes and decodes Opus voice (RFC 6716) for Chorus calls,
// through libopus (the reference implementation, via gopkg.in/hraban/opus.v2
// and cgo), and reads the Opus SDP fmtp parameters of RFC 7587 §6.1.
//
// Audio is 48 kHz mono 16-bit PCM, the RTP clock of RFC 7587 §4.1. SDP
// always says `opus/48000/2` (RFC 7587 §7); Chorus sends mono and its
// decoder folds a stereo packet down to mono. An [Encoder] and a [Decoder]
// belong to one call and one goroutine; both work in caller-owned buffers
// and allocate nothing per frame.
//
// What a caller must know about timing:
//
//   - Chorus sends 20 ms frames ([FrameSamples] = 960 samples); a peer may
//     send 2.5 to 60 ms (120 in theory), so a decode buffer needs
//     [MaxFrameSamples].
//   - The codec delays audio by the encoder's lookahead, 6.5 ms (312
//     samples) at 48 kHz: 2.5 ms of lookahead plus 4 ms of delay
//     compensation in libopus (TestEncoderDelay finds the best match at
//     about 6.3 ms). The decoder adds none.
//   - On loss, call [Decoder.DecodeFEC] with the next packet (in-band FEC,
//     RFC 7587 §3.3 and RFC 6716 §2.1.7) when it is at hand, else
//     [Decoder.Conceal]; then decode the next packet as usual.
//   - A payload of 1 or 2 bytes is a DTX frame (RFC 7587 §3.1.3); it decodes
//     to comfort noise or silence of its TOC's duration ([IsDTX]).
//
// A build without cgo gets a stub whose constructors return [ErrNoCgo], so
// the module still compiles.
package opus
