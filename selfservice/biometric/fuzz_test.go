package biometric_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/internal/testserver"
	"github.com/pvpipe/pvauth/selfservice/biometric"
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

var fzAlgs = []string{biometric.AlgES256, biometric.AlgRS256, biometric.AlgPS256, "", "ES384", "es256"}

// FuzzParsePublicKey: never panics; every refusal is a *KeyError with the contract's
// prefix; every accepted key fits its algorithm and its canonical PEM parses back to it.
func FuzzParsePublicKey(f *testing.F) {
	k := ktKeySet(f)
	for _, sg := range ktSigners(k) {
		for _, fm := range ktKeyFormats(f, sg.Priv.Public()) {
			f.Add(fm.Value, sg.Alg)
		}
	}
	p384, _ := k.p384.PublicKey.Bytes()
	pt, _ := k.ec.PublicKey.Bytes()
	f.Add(base64.StdEncoding.EncodeToString(p384), biometric.AlgES256)
	f.Add(base64.StdEncoding.EncodeToString(pt), biometric.AlgRS256)
	f.Add(ktPEM("PUBLIC KEY", ktMustDER(f, k.ed)), biometric.AlgES256)
	f.Add(ktPEM("PUBLIC KEY", ktMustDER(f, &k.rsa1024.PublicKey)), biometric.AlgRS256)
	f.Add(ktPEM("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&k.rsa2048.PublicKey)), biometric.AlgPS256)
	f.Add("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----", biometric.AlgES256)
	f.Add("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", biometric.AlgES256)
	f.Add("BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", biometric.AlgES256)
	f.Add("", "")
	f.Add("-----BEGIN", "ES256")
	f.Add(`-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----`, "ES256")

	f.Fuzz(func(t *testing.T, s, alg string) {
		pub, pemOut, err := biometric.ParsePublicKey(s, alg)
		if err != nil {
			var ke *biometric.KeyError
			if !errors.As(err, &ke) {
				t.Fatalf("error %T %v is not a *KeyError", err, err)
			}
			if !strings.HasPrefix(err.Error(), "Invalid public key format") {
				t.Fatalf("message %q", err)
			}
			if pub != nil || pemOut != "" {
				t.Fatal("a key returned with an error")
			}
			return
		}
		switch alg {
		case biometric.AlgES256:
			ec, ok := pub.(*ecdsa.PublicKey)
			if !ok || ec.Curve != elliptic.P256() {
				t.Fatalf("ES256 accepted %T", pub)
			}
		case biometric.AlgRS256, biometric.AlgPS256:
			r, ok := pub.(*rsa.PublicKey)
			if !ok || r.N.BitLen() < 2048 || r.N.BitLen() > 8192 {
				t.Fatalf("%s accepted %T", alg, pub)
			}
		default:
			t.Fatalf("algorithm %q accepted", alg)
		}
		again, pemAgain, err := biometric.ParsePublicKey(pemOut, alg)
		if err != nil || pemAgain != pemOut {
			t.Fatalf("canonical PEM does not parse back: %v\n%s", err, pemOut)
		}
		if !again.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
			t.Fatal("canonical PEM is another key")
		}
	})
}

// FuzzDecodeBase64: never panics; what it decodes survives a standard-base64 round trip.
func FuzzDecodeBase64(f *testing.F) {
	for _, s := range []string{"", "=", "====", "AA", "AA==", "AAA=", "-_-_", "+/+/", "+/-_", "a b\nc\r\nd", "Zm9v", "Zm9vYg", "Zm9vYg==", "Zm9vYg=", "Zm9vYg===", "A", "AAAAA", "\x00", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := biometric.DecodeBase64(s)
		if err != nil {
			return
		}
		if len(b) > len(s) {
			t.Fatalf("%d bytes decoded from %d characters", len(b), len(s))
		}
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.RawURLEncoding, base64.URLEncoding} {
			again, err := biometric.DecodeBase64(enc.EncodeToString(b))
			if len(b) == 0 {
				continue
			}
			if err != nil || !bytes.Equal(again, b) {
				t.Fatalf("round trip of %x: %x, %v", b, again, err)
			}
		}
	})
}

// FuzzVerifyEncoded: fixed keys, arbitrary signature strings: the answer is nil or exactly
// ErrSignature, never a panic, and VerifyDigest agrees with VerifyEncoded.
func FuzzVerifyEncoded(f *testing.F) {
	k := ktKeySet(f)
	msg := []byte("fuzz challenge: thirty-two bytes")
	digest := sha256.Sum256(msg)
	signers := []ktSigner{
		{"ES256", biometric.AlgES256, k.ec},
		{"RS256", biometric.AlgRS256, k.rsa2048},
		{"PS256", biometric.AlgPS256, k.rsa2048},
		{"RS256-3072", biometric.AlgRS256, k.rsa3072},
	}
	for i, sg := range signers {
		for _, se := range ktSigEncodings(sg.Alg) {
			for _, b := range ktB64 {
				f.Add(uint8(i), b.Enc.EncodeToString(ktSign(f, sg.Priv, sg.Alg, se, msg)))
			}
		}
	}
	f.Add(uint8(0), "")
	f.Add(uint8(0), strings.Repeat("A", 86))
	f.Add(uint8(1), strings.Repeat("/", 5000))
	f.Add(uint8(2), "MEUCIQ")

	f.Fuzz(func(t *testing.T, which uint8, sig string) {
		sg := signers[int(which)%len(signers)]
		pub := sg.Priv.Public()
		err := biometric.VerifyEncoded(pub, sg.Alg, digest[:], sig)
		if err != nil && err != biometric.ErrSignature { //nolint:errorlint // the exact sentinel is the contract
			t.Fatalf("VerifyEncoded: %v", err)
		}
		raw, derr := biometric.DecodeBase64(sig)
		if derr != nil || len(sig) > 4096 {
			if err == nil {
				t.Fatalf("undecodable or oversized signature %q verified", sig)
			}
			return
		}
		if err2 := biometric.VerifyDigest(pub, sg.Alg, digest[:], raw); (err2 == nil) != (err == nil) {
			t.Fatalf("VerifyDigest %v, VerifyEncoded %v", err2, err)
		}
		// A signature for one scheme never passes as another key's.
		for _, other := range signers {
			if other.Priv == sg.Priv {
				continue
			}
			if biometric.VerifyDigest(other.Priv.Public(), other.Alg, digest[:], raw) == nil && err == nil && other.Alg == sg.Alg {
				t.Fatalf("one signature verified under two keys")
			}
		}
		// Arbitrary raw bytes as a signature.
		if e := biometric.VerifyDigest(pub, sg.Alg, digest[:], []byte(sig)); e != nil && e != biometric.ErrSignature { //nolint:errorlint
			t.Fatalf("VerifyDigest on raw bytes: %v", e)
		}
	})
}

// ---------------------------------------------------------------------------------------
// Request bodies against the real endpoints (one server per target, SQLite in memory).

// fzPost posts body as is and checks the answer: below 500, and every error in the
// contract's shape.
func fzPost(t *testing.T, srv *testserver.Server, path, bearer string, body []byte) *testserver.Response {
	t.Helper()
	resp := srv.Public(t, http.MethodPost, path, bearer, body)
	if resp.Status >= 500 {
		t.Fatalf("POST %s %q: %d %s", path, body, resp.Status, resp.Body)
	}
	if resp.Status >= 300 {
		var e mxErrBody
		if err := json.Unmarshal(resp.Body, &e); err != nil || e.StatusCode != resp.Status || e.Message == "" || e.Error == "" {
			t.Fatalf("POST %s %q: error body %s", path, body, resp.Body)
		}
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
	k := ktKeySet(f)
	srv := fzServer(f)
	u := mxNewUser(f, srv)
	for _, sg := range ktSigners(k) {
		for _, fm := range ktKeyFormats(f, sg.Priv.Public())[:2] {
			f.Add(fzJSON(mxRegisterBody("fuzz-"+uuid.NewString(), fm.Value, sg.Alg)))
		}
	}
	good := mxRegisterBody("fuzz-fp", mxPEM(f, &k.ec.PublicKey), biometric.AlgES256)
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
	k := ktKeySet(f)
	srv := fzServer(f)
	u := mxNewUser(f, srv)
	sign := mxES256(f, k.ec)
	for i := 0; i < 3; i++ {
		c := mxRegisterChallenge(f, srv, u, mxFingerprint("fuzz-verify"), mxPEM(f, &k.ec.PublicKey), biometric.AlgES256)
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
	k := ktKeySet(f)
	srv := fzServer(f)
	u := mxNewUser(f, srv)
	sign := mxES256(f, k.ec)
	fp := mxFingerprint("fuzz-mobile")
	mxRegister(f, srv, u, fp, mxPEM(f, &k.ec.PublicKey), biometric.AlgES256, sign)
	for i := 0; i < 3; i++ {
		c := mxMobileChallenge(f, srv, fp)
		f.Add(fzJSON(map[string]any{"sessionId": c.SessionID, "signedChallenge": sign(c.Bytes(f)), "rememberMe": i == 1}))
		f.Add(fzJSON(map[string]any{"sessionId": c.SessionID, "signedChallenge": base64.RawURLEncoding.EncodeToString(c.Bytes(f))}))
	}
	rc := mxRegisterChallenge(f, srv, u, mxFingerprint("fuzz-mobile-reg"), mxPEM(f, &k.ec.PublicKey), biometric.AlgES256)
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
