package x_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/pvpipe/pvauth/x"
)

func mustPrefixes(t *testing.T, s ...string) []netip.Prefix {
	t.Helper()
	p, err := x.ParsePrefixes(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestClientIP(t *testing.T) {
	proxies := mustPrefixes(t, "10.0.0.0/8", "127.0.0.1", "::1", "fd00::/8")
	for name, tc := range map[string]struct {
		remote  string
		xff     []string
		trusted []netip.Prefix
		want    string
	}{
		"no proxies: peer":                   {"203.0.113.5:4000", nil, nil, "203.0.113.5"},
		"no proxies: XFF ignored":            {"203.0.113.5:4000", []string{"1.2.3.4"}, nil, "203.0.113.5"},
		"untrusted peer: XFF ignored":        {"203.0.113.5:4000", []string{"1.2.3.4"}, proxies, "203.0.113.5"},
		"trusted peer, no XFF":               {"10.1.2.3:4000", nil, proxies, "10.1.2.3"},
		"trusted peer, one hop":              {"10.1.2.3:4000", []string{"198.51.100.7"}, proxies, "198.51.100.7"},
		"spoofed left-most entry":            {"10.1.2.3:4000", []string{"1.1.1.1, 198.51.100.7"}, proxies, "198.51.100.7"},
		"chain of trusted proxies":           {"10.1.2.3:4000", []string{"1.1.1.1, 198.51.100.7, 10.9.9.9, 10.8.8.8"}, proxies, "198.51.100.7"},
		"several headers, in order":          {"10.1.2.3:4000", []string{"1.1.1.1", "198.51.100.7, 10.9.9.9"}, proxies, "198.51.100.7"},
		"all trusted: left-most hop":         {"10.1.2.3:4000", []string{"10.5.5.5, 10.6.6.6"}, proxies, "10.5.5.5"},
		"empty entries skipped":              {"10.1.2.3:4000", []string{" , 198.51.100.7 ,, "}, proxies, "198.51.100.7"},
		"malformed right-most: stop at peer": {"10.1.2.3:4000", []string{"198.51.100.7, not-an-ip"}, proxies, "10.1.2.3"},
		"malformed behind trusted hop":       {"10.1.2.3:4000", []string{"198.51.100.7, garbage, 10.9.9.9"}, proxies, "10.9.9.9"},
		"host:port in XFF is its host":       {"10.1.2.3:4000", []string{"198.51.100.7:5555"}, proxies, "198.51.100.7"},
		"[ipv6]:port in XFF is its host":     {"10.1.2.3:4000", []string{"[2001:db8::7]:443"}, proxies, "2001:db8::7"},
		"unknown keyword":                    {"10.1.2.3:4000", []string{"unknown"}, proxies, "10.1.2.3"},
		"malformed left of the client":       {"10.1.2.3:4000", []string{"garbage, 198.51.100.7"}, proxies, "198.51.100.7"},
		"ipv6 peer and client":               {"[::1]:4000", []string{"2001:db8::1"}, proxies, "2001:db8::1"},
		"ipv6 untrusted peer":                {"[2001:db8::9]:4000", []string{"1.1.1.1"}, proxies, "2001:db8::9"},
		"ipv4-mapped peer is unmapped":       {"[::ffff:10.1.2.3]:4000", []string{"198.51.100.7"}, proxies, "198.51.100.7"},
		"ipv4-mapped client is unmapped":     {"10.1.2.3:4000", []string{"::ffff:198.51.100.7"}, proxies, "198.51.100.7"},
		"ipv4-mapped trusted hop":            {"10.1.2.3:4000", []string{"198.51.100.7, ::ffff:10.9.9.9"}, proxies, "198.51.100.7"},
		"remote without port":                {"203.0.113.5", nil, proxies, "203.0.113.5"},
		"ipv6 ULA proxy range":               {"[fd00::1]:80", []string{"2001:db8::5, fd12::1"}, proxies, "2001:db8::5"},
	} {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := x.ClientIP(r, tc.trusted); got != tc.want {
				t.Fatalf("ClientIP = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParsePrefixes(t *testing.T) {
	got, err := x.ParsePrefixes([]string{"10.1.2.3/8", " 127.0.0.1 ", "", "::1", "::ffff:192.0.2.1", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "127.0.0.1/32", "::1/128", "192.0.2.1/32", "2001:db8::/32"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("prefix %d = %s, want %s", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "nope", "1.2.3", "10.0.0.0/", "::1/129"} {
		if _, err := x.ParsePrefixes([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestWithClientIPOverHTTP goes through a real socket: the peer is 127.0.0.1, which is
// trusted in one server and not in the other.
func TestWithClientIPOverHTTP(t *testing.T) {
	handler := x.WithClientIP
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, x.ClientIPFromContext(r.Context()))
	})
	trusting := httptest.NewServer(handler(mustPrefixes(t, "127.0.0.0/8", "::1"))(echo))
	defer trusting.Close()
	distrusting := httptest.NewServer(handler(nil)(echo))
	defer distrusting.Close()

	get := func(url, xff string) string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.TrimSpace(string(b))
	}
	if got := get(trusting.URL, "1.1.1.1, 198.51.100.7"); got != "198.51.100.7" {
		t.Errorf("trusted loopback peer: %q", got)
	}
	if got := get(trusting.URL, ""); got != "127.0.0.1" {
		t.Errorf("trusted loopback peer without XFF: %q", got)
	}
	if got := get(distrusting.URL, "198.51.100.7"); got != "127.0.0.1" {
		t.Errorf("untrusted peer: %q", got)
	}
	if got := x.ClientIPFromContext(httptest.NewRequest(http.MethodGet, "/", nil).Context()); got != "" {
		t.Errorf("no middleware: %q", got)
	}
}

func TestClientNetwork(t *testing.T) {
	for in, want := range map[string]string{
		"198.51.100.7":            "198.51.100.7",
		"::ffff:198.51.100.7":     "198.51.100.7",
		"2001:db8:1:2::1":         "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff:1:2:3": "2001:db8:1:2::/64",
		"2001:db8:1:3::1":         "2001:db8:1:3::/64",
		"fe80::1%eth0":            "fe80::/64",
		"not an address":          "not an address",
	} {
		if got := x.ClientNetwork(in); got != want {
			t.Errorf("ClientNetwork(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzClientIP: any X-Forwarded-For is answered with an address (never a panic), and the
// network of that address is stable.
func FuzzClientIP(f *testing.F) {
	for _, s := range []string{"198.51.100.7", "198.51.100.7:5555", "[2001:db8::7]:443", "a, b,, 1.2.3.4", "::1%lo", "[::1]"} {
		f.Add(s)
	}
	proxies, _ := x.ParsePrefixes([]string{"10.0.0.0/8"})
	f.Fuzz(func(t *testing.T, xff string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = "10.1.2.3:4000"
		r.Header.Set("X-Forwarded-For", xff)
		ip := x.ClientIP(r, proxies)
		if _, err := netip.ParseAddr(ip); err != nil {
			t.Fatalf("ClientIP(%q) = %q, not an address", xff, ip)
		}
		if n := x.ClientNetwork(ip); x.ClientNetwork(n) != n && !strings.Contains(n, "/") {
			t.Fatalf("network of %q unstable: %q", ip, n)
		}
	})
}
