package main

import (
	"context"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"time"

	"chorus/bridge"
	"chorus/media"
	"chorus/sip"
)

// inProcess is a bridge running inside the harness, wired as cmd/chorus
// wires it (dial-in auto-create on), with SIP on a port chosen at run time.
type inProcess struct {
	Target netip.AddrPort
	br     *bridge.Bridge
	srv    *sip.Server
}

func startInProcess(localIP string, maxMembers int, log *slog.Logger) (*inProcess, error) {
	ip, err := netip.ParseAddr(localIP)
	if err != nil {
		return nil, err
	}
	br := bridge.New(bridge.Config{DefaultUser: "u-load", AutoCreate: true, MaxMembers: maxMembers}, log, nil)
	ports, err := media.NewPortPool(ip, 30000, 60000, 2*time.Second)
	if err != nil {
		return nil, err
	}
	srv, err := sip.New(sip.Config{PublicIP: ip, Ports: ports, Bridge: br, Log: log})
	if err != nil {
		return nil, err
	}
	udp, err := srv.ListenUDP(net.JoinHostPort(localIP, "0"))
	if err != nil {
		_ = srv.Close()
		return nil, err
	}
	return &inProcess{Target: udp, br: br, srv: srv}, nil
}

// Metrics reads the bridge's counters directly.
func (p *inProcess) Metrics() (Metrics, error) {
	st := p.br.Stats()
	m := Metrics{OK: true, Ticks: st.Ticks.Load(), Restarts: st.Restarts.Load(), PacketsIn: st.PacketsIn.Load(),
		PacketsOut: st.PacketsOut.Load(), Encodes: st.Encodes.Load(), TickSeconds: float64(st.TickNanos.Load()) / 1e9,
		LatenessMax: float64(st.MaxLateness.Load()) / 1e9}
	var cum uint64
	for i, b := range bridge.LatenessBuckets {
		cum += st.Lateness[i].Load()
		m.LatenessLE = append(m.LatenessLE, b.Seconds())
		m.LatenessCum = append(m.LatenessCum, cum)
	}
	cum += st.Lateness[len(bridge.LatenessBuckets)].Load()
	m.LatenessLE = append(m.LatenessLE, math.Inf(1))
	m.LatenessCum = append(m.LatenessCum, cum)
	return m, nil
}

// Close hangs up every call and stops the bridge.
func (p *inProcess) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p.br.HangupAll(ctx, "load-end")
	_ = p.srv.Close()
}
