package x_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pvpipe/pvauth/x"
)

type optBody struct {
	Reason string `json:"reason"`
}

func (b *optBody) Validate() error { return x.MaxLen("reason", b.Reason, 5) }

func TestDecodeJSONOptional(t *testing.T) {
	cases := []struct {
		name, body string
		chunked    bool
		status     int
		want       string
	}{
		{"absent", "", false, 0, ""},
		{"empty chunked", "", true, 0, ""},
		{"whitespace chunked", "  \n", true, 0, ""},
		{"object", `{"reason":"abc"}`, false, 0, "abc"},
		{"object chunked", `{"reason":"abc"}`, true, 0, "abc"},
		{"malformed", `{"reason":`, false, 400, ""},
		{"invalid field", `{"reason":"abcdefgh"}`, true, 400, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body io.Reader = strings.NewReader(c.body)
			if c.chunked {
				body = io.MultiReader(strings.NewReader(c.body)) // unknown length
			}
			r := httptest.NewRequest(http.MethodPost, "/", body)
			if c.chunked {
				r.ContentLength = -1
			}
			r.Header.Set("Content-Type", "application/json")
			var b optBody
			err := x.DecodeJSONOptional(r, &b)
			if c.status == 0 {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				if b.Reason != c.want {
					t.Fatalf("reason %q, want %q", b.Reason, c.want)
				}
				return
			}
			if err == nil || x.AsError(err).Status != c.status {
				t.Fatalf("want status %d, got %v", c.status, err)
			}
		})
	}
}

func TestDecodeJSONRefusesNUL(t *testing.T) {
	for _, body := range []string{`{"reason":"a\u0000"}`, "{\"reason\":\"a\x00\"}"} {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		var b optBody
		err := x.DecodeJSON(r, &b)
		if err == nil || x.AsError(err).Status != http.StatusBadRequest {
			t.Fatalf("%q: want 400, got %v", body, err)
		}
	}
}
