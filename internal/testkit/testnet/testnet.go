// Package testnet holds the network helpers of tests that even the server packages
// (testpg, testredis) need; it imports nothing of pvauth, so any test package can use it.
package testnet

import (
	"net"
	"testing"
)

// FreePort returns a loopback port nothing listens on (at the time of the call).
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
