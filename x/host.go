package x

import (
	"net"
	"strings"
)

// IsLoopbackHost reports whether h (a host name or address, without port) is a loopback
// address or localhost.
func IsLoopbackHost(h string) bool {
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	lh := strings.ToLower(strings.TrimSuffix(h, "."))
	if lh == "localhost" || strings.HasSuffix(lh, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// AdminHostAllowed reports whether a request's Host header (host[:port]) names this
// machine: a loopback address, localhost, or one of allowed (compared without case).
func AdminHostAllowed(hostHeader string, allowed []string) bool {
	h := hostHeader
	if hh, _, err := net.SplitHostPort(hostHeader); err == nil {
		h = hh
	} else if strings.Count(h, ":") > 1 && !strings.HasPrefix(h, "[") {
		// A bare IPv6 address without brackets or port.
		h = hostHeader
	}
	if h == "" {
		return false
	}
	if IsLoopbackHost(h) {
		return true
	}
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	for _, a := range allowed {
		if strings.TrimSuffix(strings.ToLower(a), ".") == h {
			return true
		}
	}
	return false
}

// Truncate cuts s to at most n bytes (for log fields taken from requests).
func Truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
