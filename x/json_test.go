package x_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pvpipe/pvauth/x"
)

type inner struct {
	Flag  bool     `json:"flag"`
	Count int      `json:"count"`
	Tags  []string `json:"tags"`
}

type decodeTarget struct {
	Name   string `json:"name"`
	Age    int    `json:"age"`
	Admin  bool   `json:"admin"`
	Nested inner  `json:"nested"`
	Ptr    *inner `json:"ptr"`
}

func (d *decodeTarget) Validate() error {
	return x.FirstError(
		x.Required("name", d.Name),
		x.MaxLen("name", d.Name, 20),
	)
}

func jsonRequest(body, contentType string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	return r
}

// asXError fails the test unless err is an *x.Error with the given status.
func asXError(t *testing.T, err error, status int) *x.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("want a %d error, got nil", status)
	}
	var e *x.Error
	if !errors.As(err, &e) {
		t.Fatalf("want *x.Error, got %T: %v", err, err)
	}
	if e.Status != status {
		t.Fatalf("want status %d, got %d (%s)", status, e.Status, e.Message)
	}
	return e
}

func TestDecodeJSONAccepts(t *testing.T) {
	for name, tc := range map[string]struct{ body, ct string }{
		"plain":               {`{"name":"ann","age":3,"admin":true,"nested":{"flag":true,"count":2,"tags":["a"]}}`, "application/json"},
		"charset":             {`{"name":"ann"}`, "application/json; charset=utf-8"},
		"suffix json":         {`{"name":"ann"}`, "application/merge-patch+json"},
		"upper case":          {`{"name":"ann"}`, "Application/JSON"},
		"unknown fields":      {`{"name":"ann","whatever":{"deep":[1,2,3]}}`, "application/json"},
		"trailing whitespace": {"{\"name\":\"ann\"}\n\t  \r\n", "application/json"},
	} {
		t.Run(name, func(t *testing.T) {
			var v decodeTarget
			if err := x.DecodeJSON(jsonRequest(tc.body, tc.ct), &v); err != nil {
				t.Fatalf("DecodeJSON: %v", err)
			}
			if v.Name != "ann" {
				t.Fatalf("name = %q", v.Name)
			}
		})
	}
	var v decodeTarget
	if err := x.DecodeJSON(jsonRequest(`{"name":"ann","age":3,"admin":true,"nested":{"flag":true,"count":2,"tags":["a","b"]},"ptr":{"count":7}}`, "application/json"), &v); err != nil {
		t.Fatal(err)
	}
	if v.Age != 3 || !v.Admin || !v.Nested.Flag || v.Nested.Count != 2 || len(v.Nested.Tags) != 2 || v.Ptr == nil || v.Ptr.Count != 7 {
		t.Fatalf("decoded %+v", v)
	}
}

func TestDecodeJSONRejects(t *testing.T) {
	for name, tc := range map[string]struct {
		body, ct string
		status   int
		contains []string
	}{
		"malformed":           {`{"name":`, "application/json", 400, []string{"Malformed JSON"}},
		"malformed comma":     {`{"name":"a",}`, "application/json", 400, []string{"Malformed JSON"}},
		"not json":            {`name=ann`, "application/json", 400, []string{"Malformed JSON"}},
		"empty body":          {``, "application/json", 400, []string{"empty"}},
		"whitespace only":     {"  \n ", "application/json", 400, []string{"empty"}},
		"string for int":      {`{"name":"ann","age":"three"}`, "application/json", 400, []string{"'age'", "number", "string"}},
		"number for string":   {`{"name":12}`, "application/json", 400, []string{"'name'", "type string", "number"}},
		"string for bool":     {`{"name":"ann","admin":"yes"}`, "application/json", 400, []string{"'admin'", "boolean"}},
		"nested wrong type":   {`{"name":"ann","nested":{"flag":"yes"}}`, "application/json", 400, []string{"'nested.flag'", "boolean"}},
		"object for array":    {`{"name":"ann","nested":{"tags":{"a":1}}}`, "application/json", 400, []string{"'nested.tags'", "array"}},
		"array for object":    {`{"name":"ann","nested":[1]}`, "application/json", 400, []string{"'nested'", "object"}},
		"float for int":       {`{"name":"ann","age":1.5}`, "application/json", 400, []string{"'age'"}},
		"overflowing int":     {`{"name":"ann","age":1e400}`, "application/json", 400, []string{"'age'"}},
		"top-level array":     {`[{"name":"ann"}]`, "application/json", 400, []string{"JSON object", "array"}},
		"top-level string":    {`"ann"`, "application/json", 400, []string{"JSON object", "string"}},
		"trailing object":     {`{"name":"ann"}{"name":"bob"}`, "application/json", 400, []string{"unexpected data"}},
		"trailing garbage":    {`{"name":"ann"} xyz`, "application/json", 400, []string{}},
		"trailing bracket":    {`{"name":"ann"}]`, "application/json", 400, []string{}},
		"text/plain":          {`{"name":"ann"}`, "text/plain", 415, []string{"application/json"}},
		"form":                {`name=ann`, "application/x-www-form-urlencoded", 415, nil},
		"bad media type":      {`{"name":"ann"}`, "application/", 415, nil},
		"json prefix trick":   {`{"name":"ann"}`, "application/jsonx", 415, nil},
		"no content type":     {`{"name":"ann"}`, "", 415, []string{"application/json"}},
		"validation required": {`{"age":1}`, "application/json", 400, []string{"'name'", "required"}},
		"validation max len":  {`{"name":"` + strings.Repeat("é", 21) + `"}`, "application/json", 400, []string{"'name'", "at most 20"}},
	} {
		t.Run(name, func(t *testing.T) {
			var v decodeTarget
			e := asXError(t, x.DecodeJSON(jsonRequest(tc.body, tc.ct), &v), tc.status)
			for _, s := range tc.contains {
				if !strings.Contains(e.Message, s) {
					t.Errorf("message %q does not contain %q", e.Message, s)
				}
			}
			if e.Code == "" || e.Message == "" {
				t.Errorf("error without code or message: %+v", e)
			}
		})
	}
}

func TestDecodeJSONDirectTooLarge(t *testing.T) {
	// Without the middleware DecodeJSON still stops at MaxBodyBytes: a valid object
	// followed by padding, and one long string.
	padded := `{"name":"ann"}` + strings.Repeat(" ", x.MaxBodyBytes)
	asXError(t, x.DecodeJSON(jsonRequest(padded, "application/json"), &decodeTarget{}), 413)
	long := `{"name":"` + strings.Repeat("a", 2<<20) + `"}`
	asXError(t, x.DecodeJSON(jsonRequest(long, "application/json"), &decodeTarget{}), 413)

	// Exactly at the limit is fine.
	exact := `{"name":"ann"}`
	exact += strings.Repeat(" ", x.MaxBodyBytes-len(exact))
	if err := x.DecodeJSON(jsonRequest(exact, "application/json"), &decodeTarget{}); err != nil {
		t.Fatalf("a body of exactly MaxBodyBytes: %v", err)
	}
}

func decodeServer(t *testing.T) *httptest.Server {
	t.Helper()
	h := x.Chain(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var v decodeTarget
		if err := x.DecodeJSON(r, &v); err != nil {
			x.WriteError(w, r, err)
			return
		}
		x.WriteData(w, http.StatusOK, map[string]any{"name": v.Name, "age": v.Age})
	}), x.Recover, x.LimitBody)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func readErrorBody(t *testing.T, resp *http.Response) x.ErrorBody {
	t.Helper()
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	var b x.ErrorBody
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		t.Fatalf("error body %q is not the contract shape: %v", raw, err)
	}
	if b.StatusCode != resp.StatusCode {
		t.Fatalf("statusCode %d in body, %d on the response", b.StatusCode, resp.StatusCode)
	}
	return b
}

// nonSeeker hides the length of a reader so that the client streams it chunked.
type nonSeeker struct{ io.Reader }

func TestLimitBodyOverHTTP(t *testing.T) {
	srv := decodeServer(t)
	big := `{"name":"` + strings.Repeat("a", 2<<20) + `"}`

	t.Run("announced", func(t *testing.T) {
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader(big))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d", resp.StatusCode)
		}
		b := readErrorBody(t, resp)
		if b.Error != "payload_too_large" || !strings.Contains(b.Message, "1 MiB") {
			t.Fatalf("body %+v", b)
		}
	})
	t.Run("streamed", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, nonSeeker{strings.NewReader(big)})
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if req.ContentLength != -1 && req.ContentLength != 0 {
			t.Fatalf("request was not streamed (ContentLength %d)", req.ContentLength)
		}
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if b := readErrorBody(t, resp); b.Error != "payload_too_large" {
			t.Fatalf("body %+v", b)
		}
	})
	t.Run("small body passes", func(t *testing.T) {
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader(`{"name":"ann","age":4}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got struct {
			Data struct {
				Name string `json:"name"`
				Age  int    `json:"age"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || got.Data.Name != "ann" || got.Data.Age != 4 {
			t.Fatalf("status %d, body %+v", resp.StatusCode, got)
		}
	})
	t.Run("bad type over HTTP", func(t *testing.T) {
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader(`{"name":"ann","age":"x"}`))
		if err != nil {
			t.Fatal(err)
		}
		b := readErrorBody(t, resp)
		if resp.StatusCode != 400 || b.Error != "bad_request" || !strings.Contains(b.Message, "'age'") {
			t.Fatalf("status %d body %+v", resp.StatusCode, b)
		}
	})
}

func TestWriteErrorShape(t *testing.T) {
	for name, tc := range map[string]struct {
		err     error
		status  int
		code    string
		message string
	}{
		"kind":             {x.ErrNotFound, 404, "not_found", x.ErrNotFound.Message},
		"custom message":   {x.ErrConflict.WithMessage("Device already registered."), 409, "conflict", "Device already registered."},
		"formatted":        {x.ErrBadRequest.WithMessagef("Field '%s' is bad.", "email"), 400, "bad_request", "Field 'email' is bad."},
		"wrapped x.Error":  {errorsJoin(x.ErrForbidden), 403, "forbidden", x.ErrForbidden.Message},
		"plain error":      {errors.New("pq: password=hunter2 connection refused"), 500, "internal_error", x.ErrInternal.Message},
		"cause not leaked": {x.ErrUnavailable.WithCause(errors.New("secret-cause-detail")), 503, "service_unavailable", x.ErrUnavailable.Message},
	} {
		t.Run(name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			x.WriteError(rec, httptest.NewRequest(http.MethodGet, "/", nil), tc.err)
			if rec.Code != tc.status {
				t.Fatalf("status %d", rec.Code)
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Fatalf("content type %q", ct)
			}
			raw := rec.Body.Bytes()
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			if len(m) != 3 {
				t.Fatalf("want exactly message, statusCode, error; got %s", raw)
			}
			if m["message"] != tc.message || m["statusCode"] != float64(tc.status) || m["error"] != tc.code {
				t.Fatalf("body %s", raw)
			}
			if bytes.Contains(raw, []byte("hunter2")) || bytes.Contains(raw, []byte("secret-cause")) {
				t.Fatalf("internal cause leaked: %s", raw)
			}
			// A 503 tells the client when to retry (API.md §1); nothing else does here.
			if got := rec.Header().Get("Retry-After"); (got != "") != (tc.status == http.StatusServiceUnavailable) {
				t.Fatalf("Retry-After %q on a %d", got, tc.status)
			}
		})
	}
}

func errorsJoin(err error) error { return errors.Join(errors.New("context"), err) }

func TestWriteErrorRetryAfter(t *testing.T) {
	e := *x.ErrTooManyRequests
	e.RetryAfter = 42
	rec := httptest.NewRecorder()
	x.WriteError(rec, httptest.NewRequest(http.MethodPost, "/", nil), &e)
	if rec.Code != 429 || rec.Header().Get("Retry-After") != "42" {
		t.Fatalf("status %d Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	var b x.ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || b.Error != "rate_limited" || b.StatusCode != 429 {
		t.Fatalf("body %s (%v)", rec.Body.Bytes(), err)
	}
	// The shared kind was not modified by the copy.
	if x.ErrTooManyRequests.RetryAfter != 0 {
		t.Fatal("ErrTooManyRequests was mutated")
	}
}

func TestErrorCopiesDoNotMutateKinds(t *testing.T) {
	before := *x.ErrBadRequest
	_ = x.ErrBadRequest.WithMessage("changed").WithCause(errors.New("cause"))
	if *x.ErrBadRequest != before {
		t.Fatalf("ErrBadRequest changed to %+v", *x.ErrBadRequest)
	}
	cause := errors.New("root cause")
	e := x.ErrInternal.WithCause(cause)
	if !errors.Is(e, cause) {
		t.Fatal("WithCause does not unwrap to the cause")
	}
	if !strings.Contains(e.Error(), "root cause") || !strings.Contains(e.Error(), "internal_error") {
		t.Fatalf("Error() = %q", e.Error())
	}
	if got := x.AsError(cause); got.Status != 500 || !errors.Is(got, cause) {
		t.Fatalf("AsError(plain) = %+v", got)
	}
	if got := x.AsError(x.ErrNotFound); got != x.ErrNotFound {
		t.Fatal("AsError of an *Error must return it")
	}
}

func TestWriteData(t *testing.T) {
	rec := httptest.NewRecorder()
	x.WriteData(rec, http.StatusCreated, map[string]int{"id": 7})
	if rec.Code != 201 || strings.TrimSpace(rec.Body.String()) != `{"data":{"id":7}}` {
		t.Fatalf("%d %s", rec.Code, rec.Body.String())
	}
	rec = httptest.NewRecorder()
	x.WriteJSON(rec, http.StatusOK, map[string]any{"bad": make(chan int)})
	if rec.Code != 500 || !strings.Contains(rec.Body.String(), `"internal_error"`) {
		t.Fatalf("unencodable value: %d %s", rec.Code, rec.Body.String())
	}
}

func TestPageSize(t *testing.T) {
	for q, want := range map[string]int{"": 20, "page_size=1": 1, "page_size=100": 100} {
		n, err := x.PageSize(httptest.NewRequest(http.MethodGet, "/?"+q, nil), 20, 100)
		if err != nil || n != want {
			t.Errorf("%q: %d, %v", q, n, err)
		}
	}
	for _, q := range []string{"page_size=0", "page_size=101", "page_size=-1", "page_size=ten", "page_size=1.5"} {
		_, err := x.PageSize(httptest.NewRequest(http.MethodGet, "/?"+q, nil), 20, 100)
		e := asXError(t, err, 400)
		if !strings.Contains(e.Message, "page_size") {
			t.Errorf("%q: message %q", q, e.Message)
		}
	}
}

func TestFieldHelpers(t *testing.T) {
	if err := x.Required("email", "  "); err == nil || !strings.Contains(err.Error(), "'email'") {
		t.Fatalf("Required blank: %v", err)
	}
	if err := x.Required("email", "a"); err != nil {
		t.Fatal(err)
	}
	if err := x.MaxLen("name", "ééé", 3); err != nil {
		t.Fatalf("MaxLen counts characters, not bytes: %v", err)
	}
	if err := x.MaxLen("name", "abcd", 3); err == nil {
		t.Fatal("MaxLen over limit passed")
	}
	if err := x.OneOf("kind", "b", "a", "b"); err != nil {
		t.Fatal(err)
	}
	if err := x.OneOf("kind", "c", "a", "b"); err == nil || !strings.Contains(err.Error(), "a, b") {
		t.Fatalf("OneOf: %v", err)
	}
	if x.FirstError(nil, nil) != nil {
		t.Fatal("FirstError of nils")
	}
	first := errors.New("first")
	if x.FirstError(nil, first, errors.New("second")) != first {
		t.Fatal("FirstError order")
	}
}
