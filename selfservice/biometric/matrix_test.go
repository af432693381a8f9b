package biometric_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/pvpipe/pvauth/devicekey"
	"github.com/pvpipe/pvauth/internal/testdb"
	"github.com/pvpipe/pvauth/internal/testkeys"
	"github.com/pvpipe/pvauth/internal/testkit"
	"github.com/pvpipe/pvauth/internal/testserver"
)

// ---------------------------------------------------------------------------------------
// HTTP helpers (prefixed mx so they do not collide with other test files of the package).

const (
	mxAPI             = "/api/v1/auth"
	mxMsgSignature    = "Invalid signature: signature verification failed"
	mxMsgKeyPrefix    = "Invalid public key format"
	mxMsgNotFound     = "Device not found or inactive"
	mxMsgExpiredWord  = "expired"
	mxMsgAlreadyWords = "already registered"
)

var mxSeq atomic.Int64

type mxUser struct {
	ID    int64
	Email string
	Token string
}

// mxNewUser creates an identity and gives it a full access token from the same token
// mechanism the password+TOTP flow uses.
func mxNewUser(t testing.TB, srv *testserver.Server) *mxUser {
	t.Helper()
	id := testkit.CreateIdentity(t, srv, map[string]any{"email": testkit.UniqueEmail("dev")})
	ts := testkit.IssueSession(t, srv, id)
	return &mxUser{ID: id.ID, Email: id.Email, Token: ts.AccessToken}
}

func mxFingerprint(prefix string) string {
	return fmt.Sprintf("%s-%d-%s", prefix, mxSeq.Add(1), uuid.NewString()[:8])
}

func mxOK(t testing.TB, what string, resp *testserver.Response, v any) {
	t.Helper()
	testkit.WantData(t, what, resp, http.StatusOK, v)
}

type mxChallenge struct {
	Challenge string    `json:"challenge"`
	ExpiresAt time.Time `json:"expiresAt"`
	DeviceID  string    `json:"deviceId"`
	SessionID string    `json:"sessionId"`
}

// Bytes is the raw challenge, the message a device signs.
func (c *mxChallenge) Bytes(t testing.TB) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(c.Challenge)
	if err != nil || len(b) != 32 {
		t.Fatalf("challenge %q is not 32 bytes of standard base64: %v", c.Challenge, err)
	}
	return b
}

type mxDevice struct {
	ID                string     `json:"id"`
	UserID            int64      `json:"userId"`
	DeviceName        string     `json:"deviceName"`
	DeviceType        string     `json:"deviceType"`
	DeviceFingerprint string     `json:"deviceFingerprint"`
	KeyAlgorithm      string     `json:"keyAlgorithm"`
	PublicKey         string     `json:"publicKey"`
	FCMToken          *string    `json:"fcmToken"`
	IsActive          bool       `json:"isActive"`
	LastUsedAt        *time.Time `json:"lastUsedAt"`
	CreatedAt         time.Time  `json:"createdAt"`
	UpdatedAt         time.Time  `json:"updatedAt"`
}

type mxTokens struct {
	AccessToken           string    `json:"accessToken"`
	AccessTokenExpiresAt  time.Time `json:"accessTokenExpiresAt"`
	RefreshToken          string    `json:"refreshToken"`
	RefreshTokenExpiresAt time.Time `json:"refreshTokenExpiresAt"`
	Signature             string    `json:"signature"`
}

func mxRegisterBody(fp, pub, alg string) map[string]any {
	return map[string]any{"deviceName": "Test phone " + fp, "deviceType": "mobile", "deviceFingerprint": fp, "publicKey": pub, "keyAlgorithm": alg}
}

func mxRegisterChallenge(t testing.TB, srv *testserver.Server, u *mxUser, fp, pub, alg string) *mxChallenge {
	t.Helper()
	var c mxChallenge
	mxOK(t, "register challenge", srv.Public(t, http.MethodPost, mxAPI+"/devices/register/challenge", u.Token, mxRegisterBody(fp, pub, alg)), &c)
	if c.SessionID == "" || c.DeviceID == "" || !c.ExpiresAt.After(time.Now().Add(-time.Second)) {
		t.Fatalf("register challenge: %+v", c)
	}
	return &c
}

func mxRegisterVerify(t testing.TB, srv *testserver.Server, u *mxUser, sessionID, sig string) *testserver.Response {
	t.Helper()
	return srv.Public(t, http.MethodPost, mxAPI+"/devices/register/verify", u.Token, map[string]any{"sessionId": sessionID, "signedChallenge": sig})
}

type mxSignFunc func(msg []byte) string

// mxRegister registers a device and returns it as the verify response shows it.
func mxRegister(t testing.TB, srv *testserver.Server, u *mxUser, fp, pub, alg string, sign mxSignFunc) *mxDevice {
	t.Helper()
	c := mxRegisterChallenge(t, srv, u, fp, pub, alg)
	var res struct {
		Success  bool      `json:"success"`
		DeviceID string    `json:"deviceId"`
		Device   *mxDevice `json:"device"`
	}
	mxOK(t, "register verify", mxRegisterVerify(t, srv, u, c.SessionID, sign(c.Bytes(t))), &res)
	if !res.Success || res.DeviceID != c.DeviceID || res.Device == nil || res.Device.ID != c.DeviceID {
		t.Fatalf("register verify: %+v (challenge %+v)", res, c)
	}
	d := res.Device
	if d.UserID != u.ID || d.DeviceFingerprint != fp || d.KeyAlgorithm != alg || !d.IsActive || d.DeviceType != "mobile" {
		t.Fatalf("registered device %+v", d)
	}
	return d
}

func mxMobileChallenge(t testing.TB, srv *testserver.Server, fp string) *mxChallenge {
	t.Helper()
	var c mxChallenge
	mxOK(t, "mobile challenge", srv.Public(t, http.MethodPost, mxAPI+"/mobile/challenge", "", map[string]any{"deviceFingerprint": fp}), &c)
	if c.SessionID == "" {
		t.Fatalf("mobile challenge: %+v", c)
	}
	return &c
}

func mxBiometric(t testing.TB, srv *testserver.Server, sessionID, sig string) *testserver.Response {
	t.Helper()
	return srv.Public(t, http.MethodPost, mxAPI+"/mobile/biometric", "", map[string]any{"sessionId": sessionID, "signedChallenge": sig})
}

// mxLogin runs a full biometric login and returns the tokens.
func mxLogin(t testing.TB, srv *testserver.Server, fp string, sign mxSignFunc) *mxTokens {
	t.Helper()
	c := mxMobileChallenge(t, srv, fp)
	var res struct {
		Success bool      `json:"success"`
		Tokens  *mxTokens `json:"tokens"`
	}
	mxOK(t, "mobile biometric", mxBiometric(t, srv, c.SessionID, sign(c.Bytes(t))), &res)
	if !res.Success || res.Tokens == nil || res.Tokens.AccessToken == "" || res.Tokens.RefreshToken == "" {
		t.Fatalf("mobile biometric: %+v", res)
	}
	return res.Tokens
}

type mxIntrospection struct {
	Active bool     `json:"active"`
	Sub    string   `json:"sub"`
	Amr    []string `json:"amr"`
	Did    string   `json:"did"`
}

func mxIntrospect(t testing.TB, srv *testserver.Server, token string) mxIntrospection {
	t.Helper()
	raw, _ := json.Marshal(testkit.IntrospectClaims(t, srv, token, ""))
	var in mxIntrospection
	if err := json.Unmarshal(raw, &in); err != nil {
		t.Fatalf("introspect %s: %v", raw, err)
	}
	return in
}

func mxListDevices(t testing.TB, srv *testserver.Server, u *mxUser) []mxDevice {
	t.Helper()
	var res struct {
		Devices []mxDevice `json:"devices"`
	}
	mxOK(t, "list devices", srv.Public(t, http.MethodGet, mxAPI+"/devices", u.Token, nil), &res)
	return res.Devices
}

// mxSigner signs with a fixed key, algorithm, encoding and base64 form.
func mxSigner(t testing.TB, priv crypto.Signer, alg, sigEnc string, enc *base64.Encoding) mxSignFunc {
	return func(msg []byte) string { return testkeys.SignB64(t, priv, alg, sigEnc, enc, msg) }
}

func mxES256(t testing.TB, priv *ecdsa.PrivateKey) mxSignFunc {
	return mxSigner(t, priv, devicekey.AlgES256, "der", base64.StdEncoding)
}

// ---------------------------------------------------------------------------------------

// Every key format × algorithm × signature encoding × base64 form registers and logs in.
func TestMatrixEveryCombinationRegistersAndLogsIn(t *testing.T) {
	k := testkeys.KeySet(t)
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u := mxNewUser(t, srv)
		n := 0
		for _, sg := range testkeys.Signers(k) {
			canonical := testkeys.PublicPEM(t, sg.Priv.Public())
			for _, f := range testkeys.KeyFormats(t, sg.Priv.Public()) {
				for _, se := range testkeys.SigEncodings(sg.Alg) {
					for _, b := range testkeys.B64 {
						n++
						name := sg.Name + "/" + f.Name + "/" + se + "/" + b.Name
						t.Run(name, func(t *testing.T) {
							fp := mxFingerprint("matrix")
							sign := mxSigner(t, sg.Priv, sg.Alg, se, b.Enc)
							d := mxRegister(t, srv, u, fp, f.Value, sg.Alg, sign)
							if d.PublicKey != canonical {
								t.Fatalf("stored key is not the canonical SPKI PEM:\n%s", d.PublicKey)
							}
							ts := mxLogin(t, srv, fp, sign)
							in := mxIntrospect(t, srv, ts.AccessToken)
							if !in.Active || in.Did != d.ID || in.Sub != strconv.FormatInt(u.ID, 10) || len(in.Amr) != 1 || in.Amr[0] != "hwk" {
								t.Fatalf("biometric token introspects as %+v (device %s)", in, d.ID)
							}
						})
					}
				}
			}
		}
		t.Logf("%d combinations registered and logged in", n)
	})
}

// A key that does not fit keyAlgorithm is 400 "Invalid public key format…".
func TestMatrixKeyAlgorithmMismatch(t *testing.T) {
	k := testkeys.KeySet(t)
	p384 := testkeys.MustDER(t, &k.P384.PublicKey)
	rsa1024 := testkeys.MustDER(t, &k.RSA1024.PublicKey)
	pt, _ := k.EC.PublicKey.Bytes()
	offCurve := append([]byte(nil), pt...)
	offCurve[64] ^= 1
	ecPEM, rsaPEM := testkeys.PublicPEM(t, &k.EC.PublicKey), testkeys.PublicPEM(t, &k.RSA2048.PublicKey)
	cases := []struct{ name, key, alg string }{
		{"P-256 for RS256", ecPEM, devicekey.AlgRS256},
		{"P-256 for PS256", ecPEM, devicekey.AlgPS256},
		{"P-256 point for RS256", base64.StdEncoding.EncodeToString(pt), devicekey.AlgRS256},
		{"RSA-2048 for ES256", rsaPEM, devicekey.AlgES256},
		{"RSA PKCS#1 for ES256", testkeys.PEM("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&k.RSA2048.PublicKey)), devicekey.AlgES256},
		{"P-384 for ES256", testkeys.PEM("PUBLIC KEY", p384), devicekey.AlgES256},
		{"RSA-1024 for RS256", testkeys.PEM("PUBLIC KEY", rsa1024), devicekey.AlgRS256},
		{"RSA-1024 for PS256", base64.StdEncoding.EncodeToString(rsa1024), devicekey.AlgPS256},
		{"ed25519 for ES256", testkeys.PublicPEM(t, k.Ed), devicekey.AlgES256},
		{"point not on the curve", base64.StdEncoding.EncodeToString(offCurve), devicekey.AlgES256},
		{"garbage", "definitely not a key", devicekey.AlgES256},
		{"private key", testkeys.PEM("PRIVATE KEY", mxPKCS8(t, k.EC)), devicekey.AlgES256},
	}
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u := mxNewUser(t, srv)
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				fp := mxFingerprint("mismatch")
				resp := srv.Public(t, http.MethodPost, mxAPI+"/devices/register/challenge", u.Token, mxRegisterBody(fp, c.key, c.alg))
				testkit.WantErrorWords(t, c.name, resp, http.StatusBadRequest, "^"+mxMsgKeyPrefix)
			})
		}
		// The fingerprints were not taken by the refused attempts.
		if ds := mxListDevices(t, srv, u); len(ds) != 0 {
			t.Fatalf("devices after refused registrations: %+v", ds)
		}
	})
}

func mxPKCS8(t testing.TB, k crypto.PrivateKey) []byte {
	t.Helper()
	b, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Bad signatures on registration and login are 401 with the contract's message, and do
// not use up the session: the good signature still works afterwards.
func TestMatrixBadSignatures(t *testing.T) {
	k := testkeys.KeySet(t)
	type algCase struct {
		name    string
		alg     string
		priv    crypto.Signer
		other   crypto.Signer
		sigEnc  string
		swapAlg string // a signature of the other RSA scheme
	}
	algs := []algCase{
		{"ES256-der", devicekey.AlgES256, k.EC, k.EC2, "der", ""},
		{"ES256-raw", devicekey.AlgES256, k.EC, k.EC2, "raw-r||s", ""},
		{"RS256", devicekey.AlgRS256, k.RSA2048, k.RSA2048b, "as-is", devicekey.AlgPS256},
		{"PS256", devicekey.AlgPS256, k.RSA3072, k.RSA2048b, "as-is", devicekey.AlgRS256},
	}
	std := base64.StdEncoding.EncodeToString
	// bad returns the refused signatures for msg, given a second challenge otherMsg.
	bad := func(t *testing.T, a algCase, msg, otherMsg []byte) map[string]string {
		good := testkeys.Sign(t, a.priv, a.alg, a.sigEnc, msg)
		flipped := append([]byte(nil), good...)
		flipped[len(flipped)/2] ^= 0x10
		m := map[string]string{
			"truncated":                    std(good[:len(good)-1]),
			"truncated to 10 bytes":        std(good[:10]),
			"bit-flipped":                  std(flipped),
			"by another key":               std(testkeys.Sign(t, a.other, a.alg, a.sigEnc, msg)),
			"of another session challenge": std(testkeys.Sign(t, a.priv, a.alg, a.sigEnc, otherMsg)),
			"not base64":                   "!!! not base64 !!!",
			"of the base64 text":           std(testkeys.Sign(t, a.priv, a.alg, a.sigEnc, []byte(std(msg)))),
		}
		if a.swapAlg != "" {
			m["signed as "+a.swapAlg] = std(testkeys.Sign(t, a.priv, a.swapAlg, "as-is", msg))
		}
		return m
	}
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u := mxNewUser(t, srv)
		for _, a := range algs {
			t.Run(a.name, func(t *testing.T) {
				fp := mxFingerprint("badsig")
				pub := testkeys.PublicPEM(t, a.priv.Public())
				sign := mxSigner(t, a.priv, a.alg, a.sigEnc, base64.StdEncoding)

				// Registration: two sessions for two fingerprints of the same key.
				c1 := mxRegisterChallenge(t, srv, u, fp, pub, a.alg)
				c2 := mxRegisterChallenge(t, srv, u, mxFingerprint("badsig-other"), pub, a.alg)
				for name, sig := range bad(t, a, c1.Bytes(t), c2.Bytes(t)) {
					testkit.WantErrorWords(t, "register verify, "+name, mxRegisterVerify(t, srv, u, c1.SessionID, sig), http.StatusUnauthorized, mxMsgSignature)
				}
				mxOK(t, "register verify after refused signatures", mxRegisterVerify(t, srv, u, c1.SessionID, sign(c1.Bytes(t))), nil)
				// The same session again, with a good signature: used, so 400 expired.
				testkit.WantErrorWords(t, "register verify replay", mxRegisterVerify(t, srv, u, c1.SessionID, sign(c1.Bytes(t))), http.StatusBadRequest, mxMsgExpiredWord)

				// Login: two sessions of the same device.
				l1, l2 := mxMobileChallenge(t, srv, fp), mxMobileChallenge(t, srv, fp)
				for name, sig := range bad(t, a, l1.Bytes(t), l2.Bytes(t)) {
					testkit.WantErrorWords(t, "mobile biometric, "+name, mxBiometric(t, srv, l1.SessionID, sig), http.StatusUnauthorized, mxMsgSignature)
				}
				good := sign(l1.Bytes(t))
				mxOK(t, "mobile biometric after refused signatures", mxBiometric(t, srv, l1.SessionID, good), nil)
				testkit.WantErrorWords(t, "mobile biometric replay", mxBiometric(t, srv, l1.SessionID, good), http.StatusBadRequest, mxMsgExpiredWord)
				// A bad signature on the used session is still 401 (signature first).
				testkit.WantErrorWords(t, "bad signature on a used session", mxBiometric(t, srv, l1.SessionID, std(testkeys.Sign(t, a.other, a.alg, a.sigEnc, l1.Bytes(t)))),
					http.StatusUnauthorized, mxMsgSignature)
				// The other session was not touched by a signature meant for it.
				mxOK(t, "second session", mxBiometric(t, srv, l2.SessionID, sign(l2.Bytes(t))), nil)
			})
		}
	})
}

// Unknown, malformed and foreign sessions are 400 "…expired…".
func TestMatrixUnknownSessions(t *testing.T) {
	k := testkeys.KeySet(t)
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		alice, bob := mxNewUser(t, srv), mxNewUser(t, srv)
		sign := mxES256(t, k.EC)
		pub := testkeys.PublicPEM(t, &k.EC.PublicKey)
		someSig := sign([]byte("whatever"))

		for _, sid := range []string{uuid.NewString(), "not-a-uuid", "12345", strings.Repeat("a", 64), "00000000-0000-0000-0000-000000000000", "'; DROP TABLE devices; --"} {
			testkit.WantErrorWords(t, "register verify "+sid, mxRegisterVerify(t, srv, alice, sid, someSig), http.StatusBadRequest, mxMsgExpiredWord)
			testkit.WantErrorWords(t, "mobile biometric "+sid, mxBiometric(t, srv, sid, someSig), http.StatusBadRequest, mxMsgExpiredWord)
		}

		// Alice's registration session presented by Bob, with a good signature: 400, and
		// it stays usable for Alice.
		fp := mxFingerprint("foreign")
		c := mxRegisterChallenge(t, srv, alice, fp, pub, devicekey.AlgES256)
		testkit.WantErrorWords(t, "bob verifies alice's session", mxRegisterVerify(t, srv, bob, c.SessionID, sign(c.Bytes(t))), http.StatusBadRequest, mxMsgExpiredWord)
		mxOK(t, "alice verifies her session", mxRegisterVerify(t, srv, alice, c.SessionID, sign(c.Bytes(t))), nil)
		if ds := mxListDevices(t, srv, bob); len(ds) != 0 {
			t.Fatalf("bob got devices: %+v", ds)
		}

		// A session of the other kind is unknown to each endpoint.
		l := mxMobileChallenge(t, srv, fp)
		testkit.WantErrorWords(t, "login session on register verify", mxRegisterVerify(t, srv, alice, l.SessionID, sign(l.Bytes(t))), http.StatusBadRequest, mxMsgExpiredWord)
		r := mxRegisterChallenge(t, srv, alice, mxFingerprint("kind"), pub, devicekey.AlgES256)
		testkit.WantErrorWords(t, "register session on mobile biometric", mxBiometric(t, srv, r.SessionID, sign(r.Bytes(t))), http.StatusBadRequest, mxMsgExpiredWord)
		// Both are still good where they belong.
		mxOK(t, "login session", mxBiometric(t, srv, l.SessionID, sign(l.Bytes(t))), nil)
		mxOK(t, "register session", mxRegisterVerify(t, srv, alice, r.SessionID, sign(r.Bytes(t))), nil)

		// Unknown fingerprint on /mobile/challenge.
		testkit.WantErrorWords(t, "unknown fingerprint", srv.Public(t, http.MethodPost, mxAPI+"/mobile/challenge", "", map[string]any{"deviceFingerprint": mxFingerprint("nobody")}),
			http.StatusNotFound, mxMsgNotFound)
	})
}

// mxAlignSecond waits until just after a whole second: challenge expiries are stored at
// whole seconds, so with ttl.challenge 1s this leaves ~0.95 s to use a challenge.
func mxAlignSecond() {
	now := time.Now()
	next := now.Truncate(time.Second).Add(time.Second + 20*time.Millisecond)
	time.Sleep(next.Sub(now))
}

// An expired challenge: a good signature is 400 "expired", a bad one 401.
func TestMatrixExpiredChallenges(t *testing.T) {
	k := testkeys.KeySet(t)
	testkit.ForEachDB(t, map[string]any{"ttl.challenge": "1s"}, func(t *testing.T, srv *testserver.Server) {
		u := mxNewUser(t, srv)
		sign := mxES256(t, k.EC)
		badSign := mxES256(t, k.EC2)
		pub := testkeys.PublicPEM(t, &k.EC.PublicKey)

		// Registration.
		fp := mxFingerprint("expired")
		c := mxRegisterChallenge(t, srv, u, fp, pub, devicekey.AlgES256)
		// Stored expiries are whole seconds, rounded up so a lifetime is never shorter than
		// configured: with 1 s it lies in [1 s, 2 s).
		if d := time.Until(c.ExpiresAt); d > 2*time.Second+100*time.Millisecond || d < 900*time.Millisecond {
			t.Fatalf("expiresAt %s is %s away with ttl.challenge 1s", c.ExpiresAt, d)
		}
		time.Sleep(time.Until(c.ExpiresAt) + 200*time.Millisecond)
		testkit.WantErrorWords(t, "expired register, bad signature", mxRegisterVerify(t, srv, u, c.SessionID, badSign(c.Bytes(t))), http.StatusUnauthorized, mxMsgSignature)
		testkit.WantErrorWords(t, "expired register, good signature", mxRegisterVerify(t, srv, u, c.SessionID, sign(c.Bytes(t))), http.StatusBadRequest, mxMsgExpiredWord)
		if ds := mxListDevices(t, srv, u); len(ds) != 0 {
			t.Fatalf("expired registration created a device: %+v", ds)
		}

		// Login: register quickly (inside one second), then let a login challenge expire.
		mxAlignSecond()
		mxRegister(t, srv, u, fp, pub, devicekey.AlgES256, sign)
		l := mxMobileChallenge(t, srv, fp)
		time.Sleep(time.Until(l.ExpiresAt) + 200*time.Millisecond)
		testkit.WantErrorWords(t, "expired login, bad signature", mxBiometric(t, srv, l.SessionID, badSign(l.Bytes(t))), http.StatusUnauthorized, mxMsgSignature)
		testkit.WantErrorWords(t, "expired login, good signature", mxBiometric(t, srv, l.SessionID, sign(l.Bytes(t))), http.StatusBadRequest, mxMsgExpiredWord)
		// A fresh challenge still works.
		mxAlignSecond()
		mxLogin(t, srv, fp, sign)
	})
}

// A fingerprint belongs to one active device: 409 "already registered", also when two
// registrations race.
func TestMatrixDuplicateFingerprint(t *testing.T) {
	k := testkeys.KeySet(t)
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		alice, bob := mxNewUser(t, srv), mxNewUser(t, srv)
		sign := mxES256(t, k.EC)
		pub := testkeys.PublicPEM(t, &k.EC.PublicKey)

		fp := mxFingerprint("dup")
		mxRegister(t, srv, alice, fp, pub, devicekey.AlgES256, sign)
		for _, u := range []*mxUser{alice, bob} {
			resp := srv.Public(t, http.MethodPost, mxAPI+"/devices/register/challenge", u.Token, mxRegisterBody(fp, testkeys.PublicPEM(t, &k.EC2.PublicKey), devicekey.AlgES256))
			testkit.WantErrorWords(t, "second registration of a fingerprint", resp, http.StatusConflict, mxMsgAlreadyWords)
		}

		// Two challenges for one fingerprint, verified at the same time: one wins.
		for round := 0; round < 5; round++ {
			fp := mxFingerprint("race")
			users := []*mxUser{alice, alice}
			if round%2 == 1 {
				users[1] = bob
			}
			c := []*mxChallenge{
				mxRegisterChallenge(t, srv, users[0], fp, pub, devicekey.AlgES256),
				mxRegisterChallenge(t, srv, users[1], fp, testkeys.PublicPEM(t, &k.RSA2048.PublicKey), devicekey.AlgRS256),
			}
			sigs := []string{sign(c[0].Bytes(t)), mxSigner(t, k.RSA2048, devicekey.AlgRS256, "as-is", base64.StdEncoding)(c[1].Bytes(t))}
			resps := testkit.RaceResponses(2, func(i int) *testserver.Response {
				return mxRegisterVerify(t, srv, users[i], c[i].SessionID, sigs[i])
			})
			var ok, conflict int
			for i, r := range resps {
				switch r.Status {
				case http.StatusOK:
					ok++
				case http.StatusConflict:
					conflict++
					testkit.WantErrorWords(t, "losing registration", r, http.StatusConflict, mxMsgAlreadyWords)
				default:
					t.Fatalf("round %d, verify %d: %d %s", round, i, r.Status, r.Body)
				}
			}
			if ok != 1 || conflict != 1 {
				t.Fatalf("round %d: %d successes and %d conflicts, want 1 and 1", round, ok, conflict)
			}
			// Exactly one active device holds the fingerprint, and it logs in.
			n := 0
			for _, u := range []*mxUser{alice, bob} {
				for _, d := range mxListDevices(t, srv, u) {
					if d.DeviceFingerprint == fp {
						n++
					}
				}
			}
			if n != 1 {
				t.Fatalf("round %d: %d active devices with the fingerprint", round, n)
			}
			winner := 0
			if resps[1].Status == http.StatusOK {
				winner = 1
			}
			winSign := []mxSignFunc{sign, mxSigner(t, k.RSA2048, devicekey.AlgRS256, "as-is", base64.StdEncoding)}[winner]
			mxLogin(t, srv, fp, winSign)
		}
	})
}

// Keygen gives a PKCS#8 P-256 key whose public half is publicKey and that works; it can
// be turned off.
func TestMatrixKeygen(t *testing.T) {
	testdb.ForEach(t, func(t *testing.T, dsn string) {
		srv := testserver.Start(t, dsn, nil)
		u := mxNewUser(t, srv)
		var kg struct {
			KeyAlgorithm string `json:"keyAlgorithm"`
			Curve        string `json:"curve"`
			PrivateKey   string `json:"privateKey"`
			PublicKey    string `json:"publicKey"`
		}
		resp := srv.Public(t, http.MethodPost, mxAPI+"/mobile/keygen", u.Token, map[string]any{"keyAlgorithm": "ES256", "keyName": "my phone"})
		mxOK(t, "keygen", resp, &kg)
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
			t.Errorf("keygen Cache-Control %q, want no-store", cc)
		}
		if kg.KeyAlgorithm != "ES256" || kg.Curve != "P-256" {
			t.Fatalf("keygen %+v", kg)
		}
		blk, rest := pem.Decode([]byte(kg.PrivateKey))
		if blk == nil || blk.Type != "PRIVATE KEY" || len(strings.TrimSpace(string(rest))) != 0 {
			t.Fatalf("privateKey is not one PKCS#8 PEM block: %q", kg.PrivateKey)
		}
		anyKey, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			t.Fatalf("PKCS#8: %v", err)
		}
		priv, ok := anyKey.(*ecdsa.PrivateKey)
		if !ok || priv.Curve != elliptic.P256() {
			t.Fatalf("private key is %T", anyKey)
		}
		pb, _ := pem.Decode([]byte(kg.PublicKey))
		if pb == nil || pb.Type != "PUBLIC KEY" {
			t.Fatalf("publicKey is not SPKI PEM: %q", kg.PublicKey)
		}
		pub, err := x509.ParsePKIXPublicKey(pb.Bytes)
		if err != nil || !priv.PublicKey.Equal(pub) {
			t.Fatalf("publicKey is not the private key's public half: %v", err)
		}
		// A second call gives another key.
		var kg2 struct {
			PrivateKey string `json:"privateKey"`
		}
		mxOK(t, "keygen again", srv.Public(t, http.MethodPost, mxAPI+"/mobile/keygen", u.Token, map[string]any{"keyAlgorithm": "ES256"}), &kg2)
		if kg2.PrivateKey == kg.PrivateKey {
			t.Fatal("keygen returned the same key twice")
		}
		fp := mxFingerprint("keygen")
		for _, se := range []string{"der", "raw-r||s"} {
			sign := mxSigner(t, priv, devicekey.AlgES256, se, base64.StdEncoding)
			if se == "der" {
				d := mxRegister(t, srv, u, fp, kg.PublicKey, devicekey.AlgES256, sign)
				if d.PublicKey != kg.PublicKey {
					t.Fatalf("stored key %q differs from keygen's %q", d.PublicKey, kg.PublicKey)
				}
			}
			mxLogin(t, srv, fp, sign)
		}
		// RS256 is not offered, and it needs a user.
		testkit.WantErrorWords(t, "keygen RS256", srv.Public(t, http.MethodPost, mxAPI+"/mobile/keygen", u.Token, map[string]any{"keyAlgorithm": "RS256"}), http.StatusBadRequest, "keyAlgorithm")
		testkit.WantErrorWords(t, "keygen anonymous", srv.Public(t, http.MethodPost, mxAPI+"/mobile/keygen", "", map[string]any{"keyAlgorithm": "ES256"}), http.StatusUnauthorized)

		off := testserver.Start(t, dsn, map[string]any{"biometric.keygen_enabled": false})
		u2 := mxNewUser(t, off)
		testkit.WantErrorWords(t, "keygen disabled", off.Public(t, http.MethodPost, mxAPI+"/mobile/keygen", u2.Token, map[string]any{"keyAlgorithm": "ES256"}), http.StatusForbidden)
	})
}

// Another user's device: invisible, not updatable, not deletable, and still working.
func TestMatrixOtherUsersDevices(t *testing.T) {
	k := testkeys.KeySet(t)
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		alice, bob := mxNewUser(t, srv), mxNewUser(t, srv)
		aSign, bSign := mxES256(t, k.EC), mxSigner(t, k.RSA2048, devicekey.AlgRS256, "as-is", base64.StdEncoding)
		aFP, bFP := mxFingerprint("alice"), mxFingerprint("bob")
		aDev := mxRegister(t, srv, alice, aFP, testkeys.PublicPEM(t, &k.EC.PublicKey), devicekey.AlgES256, aSign)
		bDev := mxRegister(t, srv, bob, bFP, testkeys.PublicPEM(t, &k.RSA2048.PublicKey), devicekey.AlgRS256, bSign)

		for _, c := range []struct {
			u    *mxUser
			want string
		}{{alice, aDev.ID}, {bob, bDev.ID}} {
			ds := mxListDevices(t, srv, c.u)
			if len(ds) != 1 || ds[0].ID != c.want || ds[0].UserID != c.u.ID {
				t.Fatalf("GET /devices of user %d: %+v", c.u.ID, ds)
			}
		}

		// FCM token: Bob cannot set Alice's; Alice can.
		fcm := func(u *mxUser, dev, tok string) *testserver.Response {
			return srv.Public(t, http.MethodPut, mxAPI+"/devices/fcm-token", u.Token, map[string]any{"deviceId": dev, "fcmToken": tok})
		}
		testkit.WantErrorWords(t, "bob sets alice's FCM token", fcm(bob, aDev.ID, "bob-token"), http.StatusNotFound, mxMsgNotFound)
		testkit.WantErrorWords(t, "FCM token of an unknown device", fcm(alice, uuid.NewString(), "x"), http.StatusNotFound, mxMsgNotFound)
		testkit.WantErrorWords(t, "FCM token of a non-UUID device", fcm(alice, "nope", "x"), http.StatusNotFound, mxMsgNotFound)
		mxOK(t, "alice sets her FCM token", fcm(alice, aDev.ID, "alice-fcm-token"), nil)
		if ds := mxListDevices(t, srv, alice); len(ds) != 1 || ds[0].FCMToken == nil || *ds[0].FCMToken != "alice-fcm-token" {
			t.Fatalf("alice's device after the FCM update: %+v", ds)
		}

		// Delete: Bob cannot delete Alice's device; it keeps working.
		del := func(u *mxUser, id string) *testserver.Response {
			return srv.Public(t, http.MethodDelete, mxAPI+"/devices/"+id, u.Token, nil)
		}
		testkit.WantErrorWords(t, "bob deletes alice's device", del(bob, aDev.ID), http.StatusNotFound, mxMsgNotFound)
		testkit.WantErrorWords(t, "delete unknown device", del(bob, uuid.NewString()), http.StatusNotFound, mxMsgNotFound)
		testkit.WantErrorWords(t, "delete non-UUID device", del(bob, "not-a-uuid"), http.StatusNotFound, mxMsgNotFound)
		aTokens := mxLogin(t, srv, aFP, aSign)
		if ds := mxListDevices(t, srv, alice); len(ds) != 1 || !ds[0].IsActive || ds[0].LastUsedAt == nil {
			t.Fatalf("alice's device after bob's attempts: %+v", ds)
		}
		if in := mxIntrospect(t, srv, aTokens.AccessToken); !in.Active || in.Did != aDev.ID {
			t.Fatalf("alice's biometric token: %+v", in)
		}
		if ds := mxListDevices(t, srv, bob); len(ds) != 1 || ds[0].ID != bDev.ID {
			t.Fatalf("bob's devices: %+v", ds)
		}
		// Anonymous callers get 401 on the device routes.
		testkit.WantErrorWords(t, "anonymous list", srv.Public(t, http.MethodGet, mxAPI+"/devices", "", nil), http.StatusUnauthorized)
		testkit.WantErrorWords(t, "anonymous delete", del(&mxUser{}, aDev.ID), http.StatusUnauthorized)

		// Alice deletes her own: tokens revoked, fingerprint free again.
		mxOK(t, "alice deletes her device", del(alice, aDev.ID), nil)
		if in := mxIntrospect(t, srv, aTokens.AccessToken); in.Active {
			t.Fatalf("token of a deleted device is active: %+v", in)
		}
		testkit.WantErrorWords(t, "delete twice", del(alice, aDev.ID), http.StatusNotFound, mxMsgNotFound)
		testkit.WantErrorWords(t, "challenge of a deleted device", srv.Public(t, http.MethodPost, mxAPI+"/mobile/challenge", "", map[string]any{"deviceFingerprint": aFP}),
			http.StatusNotFound, mxMsgNotFound)
		mxRegister(t, srv, bob, aFP, testkeys.PublicPEM(t, &k.EC.PublicKey), devicekey.AlgES256, aSign)
	})
}

// The admin port lists a user's devices, inactive ones included, and its DELETE
// deactivates and revokes.
func TestMatrixAdminDevices(t *testing.T) {
	k := testkeys.KeySet(t)
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		alice, bob := mxNewUser(t, srv), mxNewUser(t, srv)
		sign1, sign2 := mxES256(t, k.EC), mxSigner(t, k.RSA3072, devicekey.AlgPS256, "as-is", base64.RawURLEncoding)
		fp1, fp2 := mxFingerprint("admin1"), mxFingerprint("admin2")
		d1 := mxRegister(t, srv, alice, fp1, testkeys.PublicPEM(t, &k.EC.PublicKey), devicekey.AlgES256, sign1)
		d2 := mxRegister(t, srv, alice, fp2, testkeys.PublicPEM(t, &k.RSA3072.PublicKey), devicekey.AlgPS256, sign2)
		mxRegister(t, srv, bob, mxFingerprint("admin-bob"), testkeys.PublicPEM(t, &k.EC2.PublicKey), devicekey.AlgES256, mxES256(t, k.EC2))
		phone := mxLogin(t, srv, fp1, sign1)
		remember := func() *mxTokens { // a rememberMe session of the same device
			c := mxMobileChallenge(t, srv, fp1)
			var res struct {
				Tokens *mxTokens `json:"tokens"`
			}
			mxOK(t, "rememberMe login", srv.Public(t, http.MethodPost, mxAPI+"/mobile/biometric", "",
				map[string]any{"sessionId": c.SessionID, "signedChallenge": sign1(c.Bytes(t)), "rememberMe": true}), &res)
			return res.Tokens
		}()
		other := mxLogin(t, srv, fp2, sign2)

		adminList := func(id int64) []mxDevice {
			var res struct {
				Devices []mxDevice `json:"devices"`
			}
			mxOK(t, "admin list", srv.Admin(t, http.MethodGet, fmt.Sprintf("/admin/identities/%d/devices", id), nil), &res)
			return res.Devices
		}
		if ds := adminList(alice.ID); len(ds) != 2 {
			t.Fatalf("admin list: %+v", ds)
		}
		adminDel := func(uid int64, dev string) *testserver.Response {
			return srv.Admin(t, http.MethodDelete, fmt.Sprintf("/admin/identities/%d/devices/%s", uid, dev), nil)
		}
		// Wrong owner in the path: 404, nothing changes.
		testkit.WantErrorWords(t, "admin delete with bob's id", adminDel(bob.ID, d1.ID), http.StatusNotFound, mxMsgNotFound)
		testkit.WantErrorWords(t, "admin delete unknown", adminDel(alice.ID, uuid.NewString()), http.StatusNotFound)
		if in := mxIntrospect(t, srv, phone.AccessToken); !in.Active {
			t.Fatal("token revoked by a refused admin delete")
		}
		pending := mxMobileChallenge(t, srv, fp1) // issued before the delete, used after
		mxOK(t, "admin delete", adminDel(alice.ID, d1.ID), nil)
		testkit.WantErrorWords(t, "login challenge of a device deleted meanwhile", mxBiometric(t, srv, pending.SessionID, sign1(pending.Bytes(t))),
			http.StatusNotFound, mxMsgNotFound)
		testkit.WantErrorWords(t, "admin delete twice", adminDel(alice.ID, d1.ID), http.StatusNotFound)

		ds := adminList(alice.ID)
		if len(ds) != 2 {
			t.Fatalf("admin list after delete (inactive included): %+v", ds)
		}
		for _, d := range ds {
			if want := d.ID != d1.ID; d.IsActive != want {
				t.Fatalf("device %s isActive %v, want %v", d.ID, d.IsActive, want)
			}
			if d.UserID != alice.ID {
				t.Fatalf("admin list of alice shows %+v", d)
			}
		}
		if us := mxListDevices(t, srv, alice); len(us) != 1 || us[0].ID != d2.ID {
			t.Fatalf("user list after admin delete: %+v", us)
		}
		// Every token issued through the device is revoked; the other device's are not.
		for name, tok := range map[string]string{"access": phone.AccessToken, "remember access": remember.AccessToken} {
			if in := mxIntrospect(t, srv, tok); in.Active {
				t.Fatalf("%s token of the deleted device introspects active", name)
			}
		}
		for name, tok := range map[string]string{"refresh": phone.RefreshToken, "remember refresh": remember.RefreshToken} {
			testkit.WantErrorWords(t, name+" of the deleted device", srv.Public(t, http.MethodPost, mxAPI+"/mobile/refresh", "", map[string]any{"refreshToken": tok}), http.StatusUnauthorized)
		}
		if in := mxIntrospect(t, srv, other.AccessToken); !in.Active || in.Did != d2.ID {
			t.Fatalf("token of the other device: %+v", in)
		}
		mxOK(t, "refresh of the other device", srv.Public(t, http.MethodPost, mxAPI+"/mobile/refresh", "", map[string]any{"refreshToken": other.RefreshToken}), nil)
		testkit.WantErrorWords(t, "challenge of the deleted device", srv.Public(t, http.MethodPost, mxAPI+"/mobile/challenge", "", map[string]any{"deviceFingerprint": fp1}),
			http.StatusNotFound, mxMsgNotFound)

		// Unknown identity and bad ids.
		testkit.WantErrorWords(t, "admin list unknown identity", srv.Admin(t, http.MethodGet, "/admin/identities/999999/devices", nil), http.StatusNotFound)
		testkit.WantErrorWords(t, "admin list bad id", srv.Admin(t, http.MethodGet, "/admin/identities/abc/devices", nil), http.StatusBadRequest)
		testkit.WantErrorWords(t, "admin delete bad id", adminDel(-1, d2.ID), http.StatusBadRequest)

		// The fingerprint can be registered again.
		mxRegister(t, srv, alice, fp1, testkeys.PublicPEM(t, &k.EC.PublicKey), devicekey.AlgES256, sign1)
		mxLogin(t, srv, fp1, sign1)
	})
}

// Strings PostgreSQL cannot hold (U+0000) are a 400 naming the field on every database,
// not a 500 on PostgreSQL. Other odd but storable strings work.
func TestMatrixOddStrings(t *testing.T) {
	k := testkeys.KeySet(t)
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u := mxNewUser(t, srv)
		pub := testkeys.PublicPEM(t, &k.EC.PublicKey)
		body := func(name, fp string) map[string]any {
			b := mxRegisterBody(fp, pub, devicekey.AlgES256)
			b["deviceName"] = name
			return b
		}
		for _, c := range []struct {
			what, field string
			body        map[string]any
		}{
			{"NUL in the fingerprint", "deviceFingerprint", body("phone", "fp\u0000"+mxFingerprint("nul"))},
			{"NUL in the name", "deviceName", body("ph\u0000one", mxFingerprint("nul"))},
		} {
			testkit.WantErrorWords(t, c.what, srv.Public(t, http.MethodPost, mxAPI+"/devices/register/challenge", u.Token, c.body), http.StatusBadRequest, c.field)
		}
		testkit.WantErrorWords(t, "NUL in the mobile fingerprint", srv.Public(t, http.MethodPost, mxAPI+"/mobile/challenge", "", map[string]any{"deviceFingerprint": "a\u0000b"}),
			http.StatusBadRequest, "deviceFingerprint")
		testkit.WantErrorWords(t, "NUL in the session id", mxBiometric(t, srv, "a\u0000b", "AAAA"), http.StatusBadRequest, "sessionId")

		// Unicode, quotes and 255 characters are fine and come back unchanged.
		sign := mxES256(t, k.EC)
		for _, fp := range []string{"指紋-" + mxFingerprint("uni"), `fp'"\;--` + mxFingerprint("q"), strings.Repeat("f", 255)} {
			name := "Téléphone 📱 " + strings.Repeat("n", 200)
			var ch mxChallenge
			mxOK(t, "odd strings", srv.Public(t, http.MethodPost, mxAPI+"/devices/register/challenge", u.Token, body(name, fp)), &ch)
			var res struct {
				Device *mxDevice `json:"device"`
			}
			mxOK(t, "register odd strings", mxRegisterVerify(t, srv, u, ch.SessionID, sign(ch.Bytes(t))), &res)
			if res.Device.DeviceName != name || res.Device.DeviceFingerprint != fp {
				t.Fatalf("stored %q / %q", res.Device.DeviceName, res.Device.DeviceFingerprint)
			}
			mxLogin(t, srv, fp, sign)
		}
	})
}

// TestMatrixFieldLengths: deviceName and fcmToken are at most 255 characters; 256 is a
// 400 naming the field, and 255 is accepted.
func TestMatrixFieldLengths(t *testing.T) {
	k := testkeys.KeySet(t)
	testkit.ForEachDB(t, nil, func(t *testing.T, srv *testserver.Server) {
		u := mxNewUser(t, srv)
		pub := testkeys.PublicPEM(t, &k.EC.PublicKey)

		fp := mxFingerprint("long-name")
		body := mxRegisterBody(fp, pub, devicekey.AlgES256)
		body["deviceName"] = strings.Repeat("n", 256)
		testkit.WantErrorWords(t, "256-character deviceName", srv.Public(t, http.MethodPost, mxAPI+"/devices/register/challenge", u.Token, body),
			http.StatusBadRequest, "deviceName")
		body["deviceName"] = strings.Repeat("n", 255)
		mxOK(t, "255-character deviceName", srv.Public(t, http.MethodPost, mxAPI+"/devices/register/challenge", u.Token, body), nil)

		dev := mxRegister(t, srv, u, mxFingerprint("long-fcm"), pub, devicekey.AlgES256, mxES256(t, k.EC))
		fcm := func(tok string) *testserver.Response {
			return srv.Public(t, http.MethodPut, mxAPI+"/devices/fcm-token", u.Token, map[string]any{"deviceId": dev.ID, "fcmToken": tok})
		}
		testkit.WantErrorWords(t, "256-character fcmToken", fcm(strings.Repeat("f", 256)), http.StatusBadRequest, "fcmToken")
		for _, d := range mxListDevices(t, srv, u) {
			if d.ID == dev.ID && d.FCMToken != nil {
				t.Fatalf("a refused fcmToken was stored: %+v", d)
			}
		}
		ok := strings.Repeat("f", 255)
		mxOK(t, "255-character fcmToken", fcm(ok), nil)
		found := false
		for _, d := range mxListDevices(t, srv, u) {
			if d.ID == dev.ID {
				found = true
				if d.FCMToken == nil || *d.FCMToken != ok {
					t.Fatalf("device after a 255-character fcmToken: %+v", d)
				}
			}
		}
		if !found {
			t.Fatalf("device %s not listed", dev.ID)
		}
	})
}
