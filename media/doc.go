// Package media carries audio between a SIP call and a conference: G.711
// codecs (ITU-T G.711; RTP payload types 0 and 8 per RFC 3551 §4.5.14), RTP
// sessions on UDP sockets (RFC 3550), SRTP with SDES keys (RFC 3711, RFC
// 4568; through pion/srtp), an adaptive jitter buffer, and tone generation.
//
// The package is a leaf: it knows nothing of conferences, SIP or HTTP, and
// it never logs on the per-packet path. Its hot paths decode into
// caller-owned memory and allocate nothing in steady state.
//
// The read chain of one call, driven by the conference's mixer goroutine
// once per 20 ms tick:
//
//	UDP socket ──Session.Poll──► [SRTP.Unprotect, in place: a packet that
//	    fails authentication is dropped and counted]
//	    ──► rtp.Packet (payload aliases the read buffer)
//	    ├─ audio PT (0/8) ──Handler.Audio──► JitterBuffer.Put (decoded to PCM)
//	    └─ telephone-event ──Handler.Event──► DTMF detector (package dtmf)
//	JitterBuffer.Read ──► 160 samples of 16-bit PCM for the mixer
//
// and the write chain:
//
//	mixed PCM ──Codec.Encode──► payload ──Session.WriteAudio──► RTP header
//	    ──► [SRTP.Protect, into the SRTP's buffer] ──► UDP socket
package media
