package password_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/pvpipe/pvauth/internal/testserver"
)

// Fuzz targets for the request decoding of the password + TOTP API: each posts arbitrary
// bytes to the real endpoint of a server started once per target (dsn "memory") and
// asserts the server never answers 5xx, and that every 4xx has the contract's error body.
//
//	go test -tags sqlite ./selfservice/password -run '^$' -fuzz FuzzLoginBody -fuzztime 30s

// seeds common to every JSON body.
var fuzzSeeds = []string{
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

// checkFuzzResponse fails on 5xx and on 4xx without the error body.
func checkFuzzResponse(t *testing.T, body []byte, resp *testserver.Response) {
	t.Helper()
	if resp.Status >= 500 {
		t.Fatalf("%q → %d %s", body, resp.Status, resp.Body)
	}
	if resp.Status >= 400 {
		var e errorBody
		if err := json.Unmarshal(resp.Body, &e); err != nil || e.StatusCode != resp.Status || e.Message == "" || e.Error == "" {
			t.Fatalf("%q → %d without the error body: %s", body, resp.Status, resp.Body)
		}
	}
	if resp.Header.Get("X-Request-Id") == "" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("%q → %d without the standard headers: %v", body, resp.Status, resp.Header)
	}
}

func FuzzLoginBody(f *testing.F) {
	srv := testserver.Start(f, "memory", nil)
	u := newUser(f, srv, nil)
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	good, _ := json.Marshal(map[string]any{"email": u.Email, "password": u.Password, "rememberMe": true})
	f.Add(good)
	f.Fuzz(func(t *testing.T, body []byte) {
		resp := srv.Public(t, http.MethodPost, routeLogin, "", body)
		checkFuzzResponse(t, body, resp)
	})
}

func FuzzOTPVerifyBody(f *testing.F) {
	srv := testserver.Start(f, "memory", nil)
	// An enrolled user: each input gets a fresh pending token, so that the wrong codes of
	// earlier inputs do not lock out the later ones and the whole handler is exercised.
	u, _ := enrolledUser(f, srv, nil)
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"otp":"` + u.Recovery[0] + `"}`))
	f.Add([]byte(`{"otp":"` + codeAt(f, u.Secret, u.lastStep) + `"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		pending := login(t, srv, u.Email, u.Password, false).Token
		resp := srv.Public(t, http.MethodPost, routeVerify, pending, body)
		checkFuzzResponse(t, body, resp)
	})
}

func FuzzRefreshBody(f *testing.F) {
	srv := testserver.Start(f, "memory", nil)
	_, ts := enrolledUser(f, srv, nil)
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	live, _ := json.Marshal(map[string]string{"refreshToken": ts.RefreshToken})
	f.Add(live)
	f.Add(live) // the second time it is a reuse
	f.Fuzz(func(t *testing.T, body []byte) {
		resp := srv.Public(t, http.MethodPost, routeRefresh, "", body)
		checkFuzzResponse(t, body, resp)
	})
}
