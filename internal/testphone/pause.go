package testphone

// SetSending stops (false) or resumes (true) the phone's audio packets
// without any signalling, as a muted phone or one with silence suppression
// does: nothing at all is sent meanwhile, and the RTP timestamps run on
// (a resumed stream continues at the wall-clock slot, as after a gap).
// DTMF is still sent.
func (p *Phone) SetSending(on bool) {
	p.mu.Lock()
	p.paused = !on
	p.mu.Unlock()
}
