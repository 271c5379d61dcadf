// Package media carries audio between a SIP call and a conference: the
// codecs G.711 (ITU-T G.711; RTP payload types 0 and 8 per RFC 3551
// §4.5.14), G.722 (media/g722; payload type 9, RTP clock 8000 per RFC 3551
// §4.5.2) and Opus (media/opus; a dynamic payload type, RTP clock 48000 per
// RFC 7587), RTP sessions on UDP sockets (RFC 3550), SRTP with SDES keys
// (RFC 3711, RFC 4568; through pion/srtp), adaptive jitter buffers,
// resampling to the room's mix rate (media/resample), and tone generation.
//
// The package is a leaf: it knows nothing of conferences, SIP or HTTP, and
// it never logs on the per-packet path. Its hot paths decode into
// caller-owned memory and allocate nothing in steady state.
//
// An Endpoint is one call's audio as the mixer sees it: it owns the
// chains below, and offers Receive (drain the socket), Pull (the next PCM
// frame at the room's rate), Digits, Push (encode and send a frame) and
// PushShared (send a payload the mixer encoded once for many listeners
// with an Encoder); PullSwitch and PushSwitch carry a call across a change
// of the room's rate without a click.
//
// The read chain of one call, driven by the conference's mixer goroutine
// once per 20 ms tick:
//
//	UDP socket ──Endpoint.Receive (Session.PollInto)──► [SRTP.Unprotect, in place: a packet that
//	    fails authentication is dropped and counted]
//	    ──► rtp.Packet (payload aliases the read buffer)
//	    ├─ audio, negotiated PT ──Handler.Audio──► G.711: JitterBuffer.Put (decoded to PCM at once)
//	    │                                          G.722, Opus: wideBuffer (the packet kept)
//	    └─ telephone-event ──Handler.Event──► DTMF detector (package dtmf)
//	Endpoint.Pull ──► G.711: JitterBuffer.Read, 160 samples at 8 kHz
//	              ──► G.722, Opus: decoded in timestamp order at play-out
//	                  (Opus: in-band FEC from the next packet, else PLC)
//	              ──► [resampler to the room's rate] ──► one frame for the mixer
//
// and the write chain:
//
//	mixed PCM ──Endpoint.Push──► [resampler to the codec's rate] ──► encode ──► payload
//	    ──Session.WriteAudio──► RTP header (timestamp advanced by the codec's RTP clock)
//	shared payload (Encoder) ──Endpoint.PushShared──► Session.WriteAudio
//	    ──► [SRTP.Protect, into the SRTP's buffer] ──► UDP socket
//
// A G.711 call in a room mixed at 8 kHz has no resampler and no codec
// state beyond its jitter buffer: an all-G.711 room costs what it did
// before wideband existed. G.722 and Opus calls keep their decoder,
// packet buffer and encoder behind one pointer of the endpoint.
//
// # Who may send and where we send
//
// A session plays packets from one proven source only (strict RTP, as
// Asterisk's strictrtp with probation; see Session): the SDP address is
// learned at its first packet, any other address (a phone behind NAT)
// after Probation packets with consecutive sequence numbers; afterwards
// other sources are dropped and counted, whatever the silence, and only
// signalling (SetParams) lets a new source be learned. We send to the
// proven source; to the SDP address before that for SendGrace (4 s) at
// most, so a forged SDP cannot make the bridge flood a third party. A
// caller that never proves its address is hung up by the bridge's RTP
// timeout. RTP ports are drawn at random from the free ones (PortPool), so
// the next call's port cannot be guessed and sprayed before its caller
// speaks.
package media
