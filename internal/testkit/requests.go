package testkit

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"

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

// PublicRequest is Server.Public for goroutines other than the test's: it takes no
// testing.T and returns a failure to send as a response with status 0 and the error as
// its body.
func PublicRequest(srv *testserver.Server, method, path, bearer string, body any) *testserver.Response {
	raw, err := json.Marshal(body)
	if err != nil {
		return &testserver.Response{Body: []byte(err.Error())}
	}
	req, err := http.NewRequest(method, srv.PublicURL+path, bytes.NewReader(raw))
	if err != nil {
		return &testserver.Response{Body: []byte(err.Error())}
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := srv.Client.Do(req)
	if err != nil {
		return &testserver.Response{Body: []byte(err.Error())}
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return &testserver.Response{Status: resp.StatusCode, Header: resp.Header, Body: out}
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
