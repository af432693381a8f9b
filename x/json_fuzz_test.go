package x_test

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pvpipe/pvauth/x"
)

type fuzzDevice struct {
	ID      string            `json:"id"`
	Enabled bool              `json:"enabled"`
	Weight  float64           `json:"weight"`
	Labels  map[string]string `json:"labels"`
}

type fuzzBody struct {
	Email   string       `json:"email"`
	Count   int          `json:"count"`
	Small   uint8        `json:"small"`
	Active  bool         `json:"active"`
	Device  fuzzDevice   `json:"device"`
	Devices []fuzzDevice `json:"devices"`
	Opt     *fuzzDevice  `json:"opt"`
	Any     any          `json:"any"`
}

func (b *fuzzBody) Validate() error {
	if b.Count < 0 {
		return x.ErrBadRequest.WithMessage("Field 'count' must not be negative.")
	}
	return x.FirstError(
		x.MaxLen("email", b.Email, 64),
		x.MaxLen("device.id", b.Device.ID, 36),
	)
}

// FuzzDecodeJSON feeds arbitrary bodies and content types to DecodeJSON: it must never
// panic, and must return nil or a client error (*x.Error with a 4xx status), never a 5xx.
func FuzzDecodeJSON(f *testing.F) {
	seeds := []string{
		`{"email":"a@b.c","count":1,"small":2,"active":true,"device":{"id":"d","enabled":true,"weight":1.5,"labels":{"k":"v"}},"devices":[{"id":"x"}],"opt":null,"any":[1,"2",{"3":null}]}`,
		`{"count":-1}`,
		`{"small":256}`,
		`{"count":"1"}`,
		`{"device":[]}`,
		`{"devices":{}}`,
		`{"opt":{"weight":"heavy"}}`,
		`{"email":"` + strings.Repeat("a", 65) + `"}`,
		`{} {}`,
		`{`,
		`[]`,
		`null`,
		`"str"`,
		`1e999`,
		``,
		"\xff\xfe{",
		`{"email":"\ud800"}`,
		`{"a":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s), "application/json")
	}
	f.Add([]byte(`{}`), "text/plain")
	f.Add([]byte(`{}`), "application/json; charset=\"")
	f.Add([]byte(`{}`), "")

	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		var v fuzzBody
		err := x.DecodeJSON(r, &v)
		if err == nil {
			return
		}
		var e *x.Error
		if !errors.As(err, &e) {
			t.Fatalf("DecodeJSON returned %T (%v), want *x.Error", err, err)
		}
		if e.Status < 400 || e.Status > 499 {
			t.Fatalf("DecodeJSON returned status %d (%v) for body %q", e.Status, err, body)
		}
		if e.Message == "" || e.Code == "" {
			t.Fatalf("error without message or code: %+v", e)
		}
	})
}
