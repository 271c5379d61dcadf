package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
)

// The RTP port ranges the tests give the bridge lie in this band, inside
// the kernel's ephemeral ports (32768–60999).
const testRTPBandLow, testRTPBandHigh = 29000, 39999

// newTargetServer is httptest.NewServer on a loopback port outside the
// tests' RTP band: the bridge refuses callbacks and fetches to its own
// ports (internal/egress), so a callback or audio server that the kernel
// happened to put on one of the bridge's RTP ports made a test fail with
// 400, about once in a few hundred runs.
func newTargetServer(h http.Handler) *httptest.Server {
	s := httptest.NewUnstartedServer(h)
	var held []net.Listener // kept open so that the kernel hands out another port
	defer func() {
		for _, ln := range held {
			_ = ln.Close()
		}
	}()
	for inBand(s.Listener) {
		held = append(held, s.Listener)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(fmt.Sprintf("newTargetServer: %v", err))
		}
		s.Listener = ln
	}
	s.Start()
	return s
}

func inBand(ln net.Listener) bool {
	port := ln.Addr().(*net.TCPAddr).Port
	return port >= testRTPBandLow && port <= testRTPBandHigh
}
