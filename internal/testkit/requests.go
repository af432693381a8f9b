package testkit

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/internal/testserver"
)

// WantErrorOf is WantError for tests that check many requests: when the check fails,
// it also names what was checked.
func WantErrorOf(t testing.TB, what string, resp *testserver.Response, status int, msgPart string) ErrorBody {
	t.Helper()
	passed := false
	defer func() {
		if !passed {
			t.Logf("the failed check: %s", what)
		}
	}()
	e := WantError(t, resp, status, msgPart)
	passed = true
	return e
}

// WantErrorWords is WantErrorOf with a message that contains each of words as written
// (a word starting with "^" must begin the message).
func WantErrorWords(t testing.TB, what string, resp *testserver.Response, status int, words ...string) ErrorBody {
	t.Helper()
	e := WantErrorOf(t, what, resp, status, "")
	for _, w := range words {
		if p, ok := strings.CutPrefix(w, "^"); ok {
			if !strings.HasPrefix(e.Message, p) {
				t.Fatalf("%s: message %q does not start with %q", what, e.Message, p)
			}
		} else if !strings.Contains(e.Message, w) {
			t.Fatalf("%s: message %q does not contain %q", what, e.Message, w)
		}
	}
	return e
}

// PublicRequest is Server.Public for goroutines other than the test's: it takes no
// testing.T and returns a failure to send as a response with status 0 and the error as
// its body.
func PublicRequest(srv *testserver.Server, method, path, bearer string, body any) *testserver.Response {
	return Send(srv.Client, method, srv.PublicURL+path, bearer, body)
}

// Send sends a request from any goroutine (it takes no testing.T): a nil body sends none,
// a []byte is sent as it is, anything else as JSON. A failure to send comes back as a
// response with status 0 and the error as its body.
func Send(c *http.Client, method, url, bearer string, body any) *testserver.Response {
	req, err := newRequest(method, url, bearer, body)
	if err != nil {
		return &testserver.Response{Body: []byte(err.Error())}
	}
	return SendRequest(c, req)
}

// SendRequest sends req from any goroutine; a failure to send comes back as a response
// with status 0 and the error as its body.
func SendRequest(c *http.Client, req *http.Request) *testserver.Response {
	r, err := roundTrip(c, req)
	if r == nil {
		return &testserver.Response{Body: []byte(err.Error())}
	}
	return r
}

// Do is Send for Race: the status and body, and a failure to send or to read the answer
// as the error.
func Do(c *http.Client, method, url, bearer string, body any) (int, []byte, error) {
	req, err := newRequest(method, url, bearer, body)
	if err != nil {
		return 0, nil, err
	}
	r, err := roundTrip(c, req)
	if r == nil {
		return 0, nil, err
	}
	return r.Status, r.Body, err
}

// newRequest is the request of Send: JSON with its Content-Type when there is a body,
// the bearer token when there is one.
func newRequest(method, url, bearer string, body any) (*http.Request, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	return req, nil
}

// roundTrip sends req and reads the whole answer; the response is nil when sending failed.
func roundTrip(c *http.Client, req *http.Request) (*testserver.Response, error) {
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return &testserver.Response{Status: resp.StatusCode, Header: resp.Header, Body: raw}, err
}

// JSONObject decodes r's body as a JSON object, numbers as json.Number (ids stay exact).
func JSONObject(t testing.TB, r *testserver.Response) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("status %d: body is not a JSON object: %v: %s", r.Status, err, r.Body)
	}
	return m
}

// DataObject is the {"data": …} object of r's JSON body, numbers as json.Number; nil
// when there is none (as a JavaScript client reads it).
func DataObject(t testing.TB, r *testserver.Response) map[string]any {
	t.Helper()
	d, _ := JSONObject(t, r)["data"].(map[string]any)
	return d
}

// Str is v as a string ("" when it is not one).
func Str(v any) string { s, _ := v.(string); return s }

// WantData fails the test unless r has status; then it decodes the answer's data into v
// (when v is not nil).
func WantData(t testing.TB, what string, r *testserver.Response, status int, v any) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("%s: status %d, want %d: %s", what, r.Status, status, r.Body)
	}
	if v != nil {
		r.Data(t, v)
	}
}

// WantSuccess fails the test unless r is a 200 whose data is {"success": true}.
func WantSuccess(t testing.TB, what string, r *testserver.Response) {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("%s: %d %s", what, r.Status, r.Body)
	}
	var ok struct {
		Success bool `json:"success"`
	}
	r.Data(t, &ok)
	if !ok.Success {
		t.Fatalf("%s: %s", what, r.Body)
	}
}

// CheckStatus reports whether r has status want; when not, it marks the test failed
// (and goes on) with the body.
func CheckStatus(t testing.TB, what string, r *testserver.Response, want int) bool {
	t.Helper()
	if r.Status != want {
		t.Errorf("%s: status %d, want %d: %s", what, r.Status, want, r.Body)
		return false
	}
	return true
}

// Browser is an HTTP client as the OAuth2 hand-off needs a browser: it keeps cookies (the
// hand-off is bound to them) and does not follow redirects, so that a test sees them.
func Browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Timeout:       30 * time.Second,
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// RandomString is n random bytes, base64url-encoded: states, nonces, verifiers.
func RandomString(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// PKCE is a fresh PKCE code verifier and its S256 code challenge.
func PKCE() (verifier, challenge string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	verifier = base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}
