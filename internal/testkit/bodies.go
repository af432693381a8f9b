package testkit

import (
	"net/http"
	"strings"
	"testing"

	"github.com/pvpipe/pvauth/internal/testserver"
)

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
		if _, ok := validErrorBody(resp.Body, resp.Status); !ok {
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
		e, ok := validErrorBody(resp.Body, resp.Status)
		if !ok {
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
