package biometric_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/pvpipe/pvauth/internal/testkeys"
	"github.com/pvpipe/pvauth/internal/testkit"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/devicekey"
	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/internal/testserver"
)

// Run one target at a time, e.g.:
//
//	go test -tags sqlite -run XXX -fuzz FuzzParsePublicKey -fuzztime 10s ./selfservice/biometric/
//
// The HTTP targets use SQLite in memory; with FUZZ_DSN=postgres (under scripts/test.sh,
// which provides the server) they run against a fresh PostgreSQL database instead.

// fzServer starts the server a fuzz target posts to.
func fzServer(f *testing.F) *testserver.Server {
	dsn := "memory"
	if os.Getenv("FUZZ_DSN") == "postgres" {
		dsn = testdb.Postgres(f)
	}
	return testserver.Start(f, dsn, nil)
}

var fzAlgs = []string{devicekey.AlgES256, devicekey.AlgRS256, devicekey.AlgPS256, "", "ES384", "es256"}

// fzPost posts body as is and checks the answer: below 500, and every error in the
// contract's shape.
func fzPost(t *testing.T, srv *testserver.Server, path, bearer string, body []byte) *testserver.Response {
	t.Helper()
	resp := srv.Public(t, http.MethodPost, path, bearer, body)
	if resp.Status >= 500 {
		t.Fatalf("POST %s %q: %d %s", path, body, resp.Status, resp.Body)
	}
	if resp.Status >= 300 {
		testkit.WantError(t, resp, resp.Status, "")
	} else {
		var env struct {
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(resp.Body, &env); err != nil || len(env.Data) == 0 {
			t.Fatalf("POST %s %q: success body %s", path, body, resp.Body)
		}
	}
	return resp
}

func fzJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// fzGenericBodies are malformed bodies every endpoint must refuse politely.
var fzGenericBodies = []string{
	``, `{`, `}`, `[]`, `null`, `"x"`, `1`, `{} {}`, `{"a":1}x`, "\xff\xfe", `{"deviceName":{}}`,
	`{"sessionId":null}`, `{"sessionId":1e999}`, `{"actionPayload":[]}`, "{\"deviceFingerprint\":\"a\\u0000b\"}",
	`{"deviceFingerprint":"` + strings.Repeat("x", 300) + `"}`,
}

func FuzzRegisterChallengeBody(f *testing.F) {
	k := testkeys.KeySet(f)
	srv := fzServer(f)
	u := mxNewUser(f, srv)
	for _, sg := range testkeys.Signers(k) {
		for _, fm := range testkeys.KeyFormats(f, sg.Priv.Public())[:2] {
			f.Add(fzJSON(mxRegisterBody("fuzz-"+uuid.NewString(), fm.Value, sg.Alg)))
		}
	}
	good := mxRegisterBody("fuzz-fp", testkeys.PublicPEM(f, &k.EC.PublicKey), devicekey.AlgES256)
	for _, mut := range []map[string]any{
		{"deviceName": strings.Repeat("n", 256)}, {"deviceType": "watch"}, {"keyAlgorithm": "HS256"},
		{"publicKey": ""}, {"publicKey": 12}, {"deviceFingerprint": ""}, {"deviceName": nil},
		{"publicKey": strings.Repeat("A", 100000)}, {"deviceFingerprint": "fp\u0000nul"}, {"deviceName": "\u0000"},
	} {
		b := map[string]any{}
		for key, v := range good {
			b[key] = v
		}
		for key, v := range mut {
			b[key] = v
		}
		f.Add(fzJSON(b))
	}
	for _, s := range fzGenericBodies {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fzPost(t, srv, mxAPI+"/devices/register/challenge", u.Token, body)
	})
}

// FuzzRegisterVerifyBody posts arbitrary bodies to /devices/register/verify; the seeds
// include real sessions, so the fuzzer starts next to the success path.
func FuzzRegisterVerifyBody(f *testing.F) {
	k := testkeys.KeySet(f)
	srv := fzServer(f)
	u := mxNewUser(f, srv)
	sign := mxES256(f, k.EC)
	for i := 0; i < 3; i++ {
		c := mxRegisterChallenge(f, srv, u, mxFingerprint("fuzz-verify"), testkeys.PublicPEM(f, &k.EC.PublicKey), devicekey.AlgES256)
		f.Add(fzJSON(map[string]any{"sessionId": c.SessionID, "signedChallenge": sign(c.Bytes(f))}))
		f.Add(fzJSON(map[string]any{"sessionId": c.SessionID, "signedChallenge": "AAAA"}))
	}
	f.Add(fzJSON(map[string]any{"sessionId": uuid.NewString(), "signedChallenge": "AAAA"}))
	f.Add(fzJSON(map[string]any{"sessionId": "x", "signedChallenge": strings.Repeat("A", 5000)}))
	for _, s := range fzGenericBodies {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fzPost(t, srv, mxAPI+"/devices/register/verify", u.Token, body)
	})
}

func FuzzMobileBiometricBody(f *testing.F) {
	k := testkeys.KeySet(f)
	srv := fzServer(f)
	u := mxNewUser(f, srv)
	sign := mxES256(f, k.EC)
	fp := mxFingerprint("fuzz-mobile")
	mxRegister(f, srv, u, fp, testkeys.PublicPEM(f, &k.EC.PublicKey), devicekey.AlgES256, sign)
	for i := 0; i < 3; i++ {
		c := mxMobileChallenge(f, srv, fp)
		f.Add(fzJSON(map[string]any{"sessionId": c.SessionID, "signedChallenge": sign(c.Bytes(f)), "rememberMe": i == 1}))
		f.Add(fzJSON(map[string]any{"sessionId": c.SessionID, "signedChallenge": base64.RawURLEncoding.EncodeToString(c.Bytes(f))}))
	}
	rc := mxRegisterChallenge(f, srv, u, mxFingerprint("fuzz-mobile-reg"), testkeys.PublicPEM(f, &k.EC.PublicKey), devicekey.AlgES256)
	f.Add(fzJSON(map[string]any{"sessionId": rc.SessionID, "signedChallenge": sign(rc.Bytes(f))}))
	f.Add(fzJSON(map[string]any{"sessionId": uuid.NewString(), "signedChallenge": "AAAA", "rememberMe": "yes"}))
	f.Add([]byte(`{"sessionId":"","signedChallenge":""}`))
	for _, s := range fzGenericBodies {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fzPost(t, srv, mxAPI+"/mobile/biometric", "", body)
	})
}

func FuzzConfirmationInitiateBody(f *testing.F) {
	srv := fzServer(f)
	u := mxNewUser(f, srv)
	for _, s := range []string{
		`{"actionType":"approve_document","actionPayload":{"documentId":"doc-12345"}}`,
		`{"actionType":"approve_document"}`,
		`{"actionType":"x","actionPayload":null}`,
		`{"actionType":"x","actionPayload":[1,2]}`,
		`{"actionType":"x","actionPayload":"str"}`,
		`{"actionType":"x","actionPayload":{"a":{"b":{"c":[1,{"d":null}]}}}}`,
		`{"actionType":"x","actionPayload":{"big":"` + strings.Repeat("y", 5000) + `"}}`,
		`{"actionType":"x","actionPayload":{"n":1e400}}`,
		`{"actionType":"` + strings.Repeat("t", 101) + `"}`,
		`{"actionType":"   "}`,
		"{\"actionType\":\"a\\u0000b\"}",
		`{"actionType":"x","actionPayload":{"k":"\ud800"}}`,
	} {
		f.Add([]byte(s))
	}
	for _, s := range fzGenericBodies {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fzPost(t, srv, mxAPI+"/confirmation/initiate", u.Token, body)
	})
}
