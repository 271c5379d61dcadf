package testphone

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"time"

	"github.com/pion/rtp"
)

const (
	sampleRate = 8000
	// maxCatchUpMs bounds how much overdue audio one wake-up sends after a
	// stall (a loaded test machine); older slots are skipped, their
	// timestamps still advance.
	maxCatchUpMs = 1000
	// dtmfToneMs is the length of a sent RFC 4733 event before its end
	// packets.
	dtmfToneMs = 100
	// maxRecordingGap is the largest forward timestamp jump filled with
	// zeros; a bigger jump (or a big backward one) starts a new segment at
	// the end of the recording.
	maxRecordingGap  = 60 * sampleRate
	maxRecordingBack = 2 * sampleRate
)

// dtmfEvent maps a digit to its RFC 4733 event code.
func dtmfEvent(d rune) (uint8, bool) {
	switch {
	case d >= '0' && d <= '9':
		return uint8(d - '0'), true
	case d == '*':
		return 10, true
	case d == '#':
		return 11, true
	case d >= 'A' && d <= 'D':
		return uint8(12 + d - 'A'), true
	case d >= 'a' && d <= 'd':
		return uint8(12 + d - 'a'), true
	}
	return 0, false
}

// SendDTMF sends digit as RFC 4733 telephone-event packets in the RTP
// stream: a start packet with the marker bit, updates every Ptime for about
// 100 ms, then the end packet three times. Audio is paused meanwhile. It
// returns when the last packet has been sent.
func (p *Phone) SendDTMF(digit rune) error {
	ev, ok := dtmfEvent(digit)
	if !ok {
		return fmt.Errorf("testphone: not a DTMF digit: %q", digit)
	}
	p.mu.Lock()
	te := p.tePT
	p.mu.Unlock()
	if te < 0 {
		return ErrNoTelephoneEvent
	}
	job := &dtmfJob{event: ev, done: make(chan struct{})}
	select {
	case p.dtmfReq <- job:
	case <-p.ended:
		return ErrEnded
	}
	select {
	case <-job.done:
		return nil
	case <-p.ended:
		return ErrEnded
	}
}

// SendRaw sends b as one datagram from the phone's RTP socket to the remote
// RTP address.
func (p *Phone) SendRaw(b []byte) error {
	p.mu.Lock()
	to := p.remote
	p.mu.Unlock()
	if !to.IsValid() {
		return errors.New("testphone: no remote RTP address")
	}
	_, err := p.rtpConn.WriteToUDPAddrPort(b, to)
	return err
}

// canSend reports whether the negotiated directions allow us to send.
func (p *Phone) canSendLocked() bool {
	local := p.localDir == dirSendRecv || p.localDir == dirSendOnly
	remote := p.remoteDir == dirSendRecv || p.remoteDir == dirRecvOnly
	return local && remote
}

// sendLoop sends one packet per Ptime slot, paced against the wall clock
// from the call start (a late wake-up sends the overdue packets, up to
// maxCatchUpMs of audio). RTP timestamps follow the slot number.
func (p *Phone) sendLoop() {
	defer p.wg.Done()
	ssrc := rand.Uint32()
	seq := uint16(rand.Uint32())
	tsBase := rand.Uint32()
	pcm := make([]int16, 60*48)
	buf := make([]byte, 1500)
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, SSRC: ssrc}, Payload: make([]byte, 1400)}
	payload := pkt.Payload
	first := true
	var enc encoders

	var job *dtmfJob
	var jobStart uint32
	var jobPkt int
	tonePkts := (dtmfToneMs + p.opts.Ptime - 1) / p.opts.Ptime

	send := func() {
		p.mu.Lock()
		to := p.remote
		p.mu.Unlock()
		n, err := pkt.MarshalTo(buf)
		if err != nil {
			return
		}
		out, err := p.protect(buf[:n])
		if err != nil {
			return
		}
		if _, err := p.rtpConn.WriteToUDPAddrPort(out, to); err != nil {
			p.log.Debug("testphone: RTP send", "error", err)
		}
		seq++
	}

	start := time.Now()
	var slot int64
	tick := time.NewTicker(p.ptime)
	defer tick.Stop()
	for {
		due := int64(time.Since(start)/p.ptime) + 1
		if maxBurst := int64(maxCatchUpMs / p.opts.Ptime); due-slot > maxBurst {
			slot = due - maxBurst
		}
		for ; slot < due; slot++ {
			p.mu.Lock()
			codec := p.codec
			p.mu.Unlock()
			// RTP timestamps count the codec's clock (8000 for G.722 too),
			// the source fills samples at its audio rate.
			ticks := p.opts.Ptime * clockRate(codec) / 1000
			samples := p.opts.Ptime * audioRate(codec) / 1000
			ts := tsBase + uint32(slot)*uint32(ticks)
			if job == nil {
				select {
				case job = <-p.dtmfReq:
					jobStart, jobPkt = ts, 0
				default:
				}
			}
			pkt.SequenceNumber = seq
			if job != nil {
				p.mu.Lock()
				te := p.tePT
				p.mu.Unlock()
				end := jobPkt >= tonePkts
				dur := min(jobPkt+1, tonePkts) * ticks
				pkt.PayloadType = uint8(te)
				pkt.Timestamp = jobStart
				pkt.Marker = jobPkt == 0
				vol := uint8(10)
				if end {
					vol |= 0x80
				}
				pkt.Payload = payload[:4]
				pkt.Payload[0] = job.event
				pkt.Payload[1] = vol
				binary.BigEndian.PutUint16(pkt.Payload[2:], uint16(dur))
				send()
				p.mu.Lock()
				p.stats.PacketsSent++
				p.stats.EventPacketsSent++
				p.mu.Unlock()
				jobPkt++
				if jobPkt >= tonePkts+3 {
					close(job.done)
					job = nil
				}
				continue
			}

			p.mu.Lock()
			src, ok, pt := p.source, p.canSendLocked() && !p.paused, p.pt
			p.mu.Unlock()
			if !ok {
				continue
			}
			frame := pcm[:samples]
			if src != nil {
				src(frame)
			} else {
				clear(frame)
			}
			pkt.PayloadType = pt
			pkt.Timestamp = ts
			pkt.Marker = first
			first = false
			n, err := enc.encode(codec, payload, frame)
			if err != nil {
				p.log.Warn("testphone: encode", "codec", codec, "error", err)
				continue
			}
			pkt.Payload = payload[:n]
			send()
			p.mu.Lock()
			p.stats.PacketsSent++
			p.stats.AudioPacketsSent++
			p.mu.Unlock()
		}
		select {
		case <-tick.C:
		case <-p.ended:
			return
		case <-p.closed:
			return
		}
	}
}

// recvLoop reads RTP until the socket is closed.
func (p *Phone) recvLoop() {
	defer p.wg.Done()
	buf := make([]byte, 2048)
	pcm := make([]int16, 0, 1024)
	var dec decoders
	var pkt rtp.Packet
	for {
		n, _, err := p.rtpConn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		now := time.Now()
		if p.opts.OnDatagram != nil {
			p.opts.OnDatagram(buf[:n])
		}
		b, ok := p.unprotect(buf[:n])
		if !ok {
			continue
		}
		if err := pkt.Unmarshal(b); err != nil || pkt.Version != 2 {
			p.mu.Lock()
			p.stats.InvalidReceived++
			p.mu.Unlock()
			continue
		}
		p.mu.Lock()
		codec, pt := p.codec, p.pt
		p.mu.Unlock()
		// The audio of the negotiated codec is decoded at its rate; before
		// the answer is read, G.711 as ever. Other audio is counted only.
		name, audio := "", false
		switch {
		case codec == "G722" || codec == "OPUS":
			name, audio = codec, pkt.PayloadType == pt
		case pkt.PayloadType == ptPCMU:
			name, audio = "PCMU", true
		case pkt.PayloadType == ptPCMA:
			name, audio = "PCMA", true
		}
		var derr error
		if audio {
			pcm, derr = dec.decode(name, pcm[:0], pkt.Payload)
		}
		p.mu.Lock()
		st := &p.stats
		st.PacketsReceived++
		st.LastSSRC = pkt.SSRC
		st.LastReceived = now
		st.PayloadTypes[pkt.PayloadType]++
		switch {
		case audio:
			st.AudioPacketsReceived++
			if derr == nil {
				p.recordLocked(pkt.SSRC, pkt.Timestamp, pcm, audioRate(name)/clockRate(name), audioRate(name))
			}
		case pkt.PayloadType == p.rxTEPT:
			st.EventPacketsReceived++
		}
		p.mu.Unlock()
	}
}

// recordLocked places decoded samples in the recording by RTP timestamp,
// filling gaps with zeros; ratio is samples per timestamp tick (2 for
// G.722) and rate the audio's sample rate. A new SSRC, or a timestamp jump
// beyond maxRecordingGap forward or maxRecordingBack backward, continues
// at the current end of the recording.
func (p *Phone) recordLocked(ssrc, ts uint32, pcm []int16, ratio, rate int) {
	end := len(p.rec)
	if !p.recStarted || ssrc != p.recSSRC {
		p.recStarted, p.recSSRC, p.recBase = true, ssrc, ts-uint32(end/ratio)
	}
	off := int64(int32(ts-p.recBase)) * int64(ratio)
	scale := int64(rate / sampleRate)
	if off > int64(end)+maxRecordingGap*scale || off < int64(end)-maxRecordingBack*scale {
		p.recBase = ts - uint32(end/ratio)
		off = int64(end)
	}
	if off < 0 {
		return // older than the start of the recording
	}
	o := int(off)
	if need := o + len(pcm); need > end {
		p.rec = append(p.rec, make([]int16, need-end)...)
	}
	copy(p.rec[o:], pcm)
}

// Recording returns a copy of all audio received so far, decoded to PCM
// at the codec's AudioRate (8 kHz for G.711) and placed by RTP timestamp
// (gaps are zeros).
func (p *Phone) Recording() []int16 { return p.RecordingSince(0) }

// Mark returns the current length of the recording, for RecordingSince.
func (p *Phone) Mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.rec)
}

// RecordingSince returns a copy of the recording from sample index mark on.
func (p *Phone) RecordingSince(mark int) []int16 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if mark < 0 {
		mark = 0
	}
	if mark >= len(p.rec) {
		return []int16{}
	}
	return append([]int16(nil), p.rec[mark:]...)
}

// Stats returns a snapshot of the RTP counters.
func (p *Phone) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.PayloadTypes = maps.Clone(p.stats.PayloadTypes)
	return s
}
