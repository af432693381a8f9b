package testkit

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/pvpipe/pvauth/internal/testserver"
	"github.com/pvpipe/pvauth/session"
)

// Tokens is the contract's TokenSet as a client reads it, plus the recovery codes a
// TOTP enrolment adds.
type Tokens struct {
	session.TokenSet
	RecoveryCodes []string `json:"recoveryCodes"`
}

// WantTokens decodes a 200 answer carrying a complete token set.
func WantTokens(t testing.TB, resp *testserver.Response) Tokens {
	t.Helper()
	if resp.Status != http.StatusOK {
		t.Fatalf("want 200 with tokens, got %d %s", resp.Status, resp.Body)
	}
	var ts Tokens
	resp.Data(t, &ts)
	if ts.AccessToken == "" || ts.RefreshToken == "" || ts.Signature == "" {
		t.Fatalf("incomplete token set: %s", resp.Body)
	}
	return ts
}

// Refresh posts refreshToken to /api/v1/auth/refresh.
func Refresh(t testing.TB, srv *testserver.Server, refreshToken string) *testserver.Response {
	t.Helper()
	return srv.Public(t, http.MethodPost, "/api/v1/auth/refresh", "", map[string]string{"refreshToken": refreshToken})
}

// IntrospectClaims is the admin port's RFC 7662 answer for token (hint may be empty);
// anything but a 200 with a JSON object fails the test.
func IntrospectClaims(t testing.TB, srv *testserver.Server, token, hint string) map[string]any {
	t.Helper()
	form := url.Values{"token": {token}}
	if hint != "" {
		form.Set("token_type_hint", hint)
	}
	req, err := http.NewRequest(http.MethodPost, srv.AdminURL+"/admin/oauth2/introspect", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if keys := srv.Config.Serve.Admin.APIKeys; len(keys) > 0 {
		req.Header.Set("Authorization", "Bearer "+keys[0])
	}
	resp, err := srv.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("introspect: %d %s", resp.StatusCode, raw)
	}
	return m
}

// IsActive reports whether the admin port finds token active; the answer must say.
func IsActive(t testing.TB, srv *testserver.Server, token string) bool {
	t.Helper()
	m := IntrospectClaims(t, srv, token, "")
	active, ok := m["active"].(bool)
	if !ok {
		t.Fatalf("introspect: no active flag in %v", m)
	}
	return active
}

// Outcome is what one of a burst of concurrent requests got.
type Outcome struct {
	Status int
	Body   []byte
	Err    error
}

// Race sends n requests at once (released together) and returns their outcomes.
func Race(n int, send func(i int) (int, []byte, error)) []Outcome {
	out := make([]Outcome, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out[i].Status, out[i].Body, out[i].Err = send(i)
		}()
	}
	close(start)
	wg.Wait()
	return out
}

// Tally fails on transport errors, 5xx and statuses other than 200 and allowed, and
// checks every refusal carries the error body. It returns how many requests got 200.
func Tally(t *testing.T, what string, outs []Outcome, allowed ...int) int {
	t.Helper()
	ok := 0
	hist := map[int]int{}
	for i, o := range outs {
		if o.Err != nil {
			t.Fatalf("%s #%d: %v", what, i, o.Err)
		}
		hist[o.Status]++
		switch {
		case o.Status == http.StatusOK:
			ok++
		case o.Status >= 500:
			t.Errorf("%s #%d: %d %s", what, i, o.Status, o.Body)
		default:
			allowedStatus := false
			for _, a := range allowed {
				allowedStatus = allowedStatus || a == o.Status
			}
			if !allowedStatus {
				t.Errorf("%s #%d: unexpected %d %s", what, i, o.Status, o.Body)
			}
			var e ErrorBody
			if err := json.Unmarshal(o.Body, &e); err != nil || e.StatusCode != o.Status || e.Message == "" {
				t.Errorf("%s #%d: bad error body %s", what, i, o.Body)
			}
		}
	}
	t.Logf("%s: statuses %v", what, hist)
	return ok
}

// JSONFuzzSeeds are seeds for fuzzing any JSON request body of the self-service API.
var JSONFuzzSeeds = []string{
	``,
	`{}`,
	`null`,
	`[]`,
	`"str"`,
	`123`,
	`{`,
	`}`,
	`{"a":1} {"b":2}`,
	`{"email":null,"password":null}`,
	`{"email":1,"password":true}`,
	`{"email":"a@b.c","password":"pw","rememberMe":"yes"}`,
	`{"email":"` + "\xff\xfe" + `","password":"x"}`,
	`{"email":"a@b.c","password":"\u0000"}`,
	`{"otp":"123456"}`,
	`{"otp":123456}`,
	`{"otp":"abcde-fghij"}`,
	`{"otp":["1"]}`,
	`{"otp":{"x":"y"}}`,
	`{"refreshToken":"ory_rt_x.y"}`,
	`{"refreshToken":1e400}`,
	`{"refreshToken":"` + string(make([]byte, 600)) + `"}`,
	`{"__proto__":{"email":"x"}}`,
	`{"email":"a@b.c","email":"d@e.f","password":"x"}`,
	`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`,
}

// CheckFuzzResponse fails on 5xx, on 4xx without the error body, and on an answer
// without the standard headers.
func CheckFuzzResponse(t *testing.T, body []byte, resp *testserver.Response) {
	t.Helper()
	if resp.Status >= 500 {
		t.Fatalf("%q → %d %s", body, resp.Status, resp.Body)
	}
	if resp.Status >= 400 {
		var e ErrorBody
		if err := json.Unmarshal(resp.Body, &e); err != nil || e.StatusCode != resp.Status || e.Message == "" || e.Error == "" {
			t.Fatalf("%q → %d without the error body: %s", body, resp.Status, resp.Body)
		}
	}
	if resp.Header.Get("X-Request-Id") == "" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("%q → %d without the standard headers: %v", body, resp.Status, resp.Header)
	}
}

// BodyCase is a bad request body and the refusal it must get: Status 0 takes any 4xx;
// Mention, when set, must appear in the message.
type BodyCase struct {
	Name, Path, Bearer, Body string
	Status                   int
	Mention                  string
}

// TooLargeBody is a JSON body over the 1 MiB limit.
func TooLargeBody() string {
	return `{"email":"a@b.c","password":"` + strings.Repeat("x", 2<<20) + `"}`
}

// MalformedBodies are the refusals every JSON endpoint owes, field being its required
// string field.
func MalformedBodies(path, bearer, field string) []BodyCase {
	c := func(name, body string, status int, mention string) BodyCase {
		return BodyCase{Name: name, Path: path, Bearer: bearer, Body: body, Status: status, Mention: mention}
	}
	return []BodyCase{
		c("malformed", `{"`+field+`":`, http.StatusBadRequest, "JSON"),
		c("not json", `hello`, http.StatusBadRequest, "JSON"),
		c("trailing data", `{"`+field+`":"x"} {}`, http.StatusBadRequest, "JSON"),
		c("array", `[]`, http.StatusBadRequest, "object"),
		c("null", `null`, http.StatusBadRequest, field),
		c("empty object", `{}`, http.StatusBadRequest, field),
		c("empty body", ``, http.StatusBadRequest, ""),
		c("wrong type", `{"`+field+`":123}`, http.StatusBadRequest, field),
		c("wrong type object", `{"`+field+`":{"a":1}}`, http.StatusBadRequest, field),
		c("blank", `{"`+field+`":"   "}`, http.StatusBadRequest, field),
		c("too long", `{"`+field+`":"`+strings.Repeat("7", 2000)+`"}`, http.StatusBadRequest, field),
		c("2 MiB", TooLargeBody(), http.StatusRequestEntityTooLarge, ""),
		c("invalid utf-8", "{\""+field+"\":\"\xff\xfe\"}", 0, ""),
	}
}

// WantRefusals posts every case (to the admin port for /admin paths) and checks it is
// refused with its 4xx, never a 5xx, and the error body.
func WantRefusals(t *testing.T, srv *testserver.Server, cases []BodyCase) {
	t.Helper()
	for _, c := range cases {
		url := srv.PublicURL + c.Path
		if strings.HasPrefix(c.Path, "/admin") {
			url = srv.AdminURL + c.Path
		}
		var body any = c.Body
		if c.Body == "" {
			body = nil
		}
		resp := srv.Do(t, http.MethodPost, url, c.Bearer, body)
		if resp.Status >= 500 || resp.Status < 400 || (c.Status != 0 && resp.Status != c.Status) {
			t.Errorf("%s %s: got %d %.200s, want %d", c.Path, c.Name, resp.Status, resp.Body, c.Status)
			continue
		}
		var e ErrorBody
		if err := json.Unmarshal(resp.Body, &e); err != nil || e.StatusCode != resp.Status || e.Message == "" || e.Error == "" {
			t.Errorf("%s %s: bad error body %.200s", c.Path, c.Name, resp.Body)
			continue
		}
		if c.Mention != "" && !strings.Contains(e.Message, c.Mention) {
			t.Errorf("%s %s: message %q does not mention %q", c.Path, c.Name, e.Message, c.Mention)
		}
	}
}

// WantUnsupportedMedia checks that a text/plain body posted to path is a 415.
func WantUnsupportedMedia(t *testing.T, srv *testserver.Server, path string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, srv.PublicURL+path, strings.NewReader(`{"email":"a@b.c","password":"x"}`))
	req.Header.Set("Content-Type", "text/plain")
	r, err := srv.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("%s with text/plain: %d", path, r.StatusCode)
	}
}
