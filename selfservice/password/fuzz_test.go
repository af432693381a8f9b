package password_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/pvpipe/pvauth/internal/testkit"
	"github.com/pvpipe/pvauth/internal/testserver"
)

// Fuzz targets for the request decoding of the password + TOTP API: each posts arbitrary
// bytes to the real endpoint of a server started once per target (dsn "memory") and
// asserts the server never answers 5xx, and that every 4xx has the contract's error body.
//
//	go test -tags sqlite ./selfservice/password -run '^$' -fuzz FuzzLoginBody -fuzztime 30s

func FuzzLoginBody(f *testing.F) {
	srv := testserver.Start(f, "memory", nil)
	u := newUser(f, srv, nil)
	for _, s := range testkit.JSONFuzzSeeds {
		f.Add([]byte(s))
	}
	good, _ := json.Marshal(map[string]any{"email": u.Email, "password": u.Password, "rememberMe": true})
	f.Add(good)
	f.Fuzz(func(t *testing.T, body []byte) {
		resp := srv.Public(t, http.MethodPost, routeLogin, "", body)
		testkit.CheckFuzzResponse(t, body, resp)
	})
}

func FuzzOTPVerifyBody(f *testing.F) {
	srv := testserver.Start(f, "memory", nil)
	// An enrolled user: each input gets a fresh pending token, so that the wrong codes of
	// earlier inputs do not lock out the later ones and the whole handler is exercised.
	u, _ := enrolledUser(f, srv, nil)
	for _, s := range testkit.JSONFuzzSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"otp":"` + u.Recovery[0] + `"}`))
	f.Add([]byte(`{"otp":"` + codeAt(f, u.Secret, u.lastStep) + `"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		pending := login(t, srv, u.Email, u.Password, false).Token
		resp := srv.Public(t, http.MethodPost, routeVerify, pending, body)
		testkit.CheckFuzzResponse(t, body, resp)
	})
}
