package x_test

import (
	"net"
	"strings"
	"testing"

	"github.com/pvpipe/pvauth/x"
)

func TestAdminHostAllowed(t *testing.T) {
	allowed := []string{"pvauth-admin.internal", "Admin.Example.COM."}
	for host, want := range map[string]bool{
		"127.0.0.1:8081":              true,
		"127.0.0.1":                   true,
		"127.8.9.10:1":                true,
		"[::1]:8081":                  true,
		"[::1]":                       true,
		"::1":                         true,
		"localhost:8081":              true,
		"LOCALHOST":                   true,
		"localhost.":                  true,
		"app.localhost:8081":          true,
		"pvauth-admin.internal:8081":  true,
		"admin.example.com":           true,
		"evil.example":                false,
		"evil.example:8081":           false,
		"localhost.evil.example":      false,
		"127.0.0.1.evil.example:8081": false,
		"10.0.0.5:8081":               false,
		"[2001:db8::1]:8081":          false,
		"0.0.0.0:8081":                false,
		"":                            false,
		":8081":                       false,
	} {
		if got := x.AdminHostAllowed(host, allowed); got != want {
			t.Errorf("AdminHostAllowed(%q) = %v, want %v", host, got, want)
		}
	}
}

// FuzzAdminHostAllowed: any Host header is answered without panic, and only names that
// are loopback or listed are let through.
func FuzzAdminHostAllowed(f *testing.F) {
	for _, s := range []string{"127.0.0.1:8081", "[::1]:1", "localhost", "evil.example", "x.localhost", "[", "]:", "::ffff:127.0.0.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		if !x.AdminHostAllowed(host, []string{"listed.example"}) {
			return
		}
		h := host
		if hh, _, err := net.SplitHostPort(host); err == nil {
			h = hh
		}
		h = strings.TrimSuffix(strings.ToLower(h), ".")
		if h != "listed.example" && !x.IsLoopbackHost(h) {
			t.Fatalf("%q let through", host)
		}
	})
}
