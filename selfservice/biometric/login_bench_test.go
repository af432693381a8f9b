package biometric_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"testing"

	"github.com/pvpipe/pvauth/internal/testserver"
	"github.com/pvpipe/pvauth/session"
)

// BenchmarkBiometricLogin is one full device-key login (challenge + signed verify) over
// loopback HTTP on SQLite. Run: go test -tags sqlite -run ^$ -bench Biometric ./selfservice/biometric/
func BenchmarkBiometricLogin(b *testing.B) {
	srv := testserver.Start(b, "memory", nil)
	srv.Admin(b, http.MethodPost, "/admin/identities", map[string]any{"email": "bench@example.com", "password": "correct horse battery"})
	ts, err := srv.Registry.Tokens().Issue(context.Background(), session.IssueRequest{IdentityID: 1, Email: "bench@example.com", AMR: []string{"pwd", "otp"}})
	if err != nil {
		b.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pub := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	sign := func(chal string) string {
		raw, _ := base64.StdEncoding.DecodeString(chal)
		sum := sha256.Sum256(raw)
		sig, _ := ecdsa.SignASN1(rand.Reader, key, sum[:])
		return base64.StdEncoding.EncodeToString(sig)
	}
	var c struct{ Challenge, SessionID string }
	srv.Public(b, http.MethodPost, "/api/v1/auth/devices/register/challenge", ts.AccessToken, map[string]any{
		"deviceName": "bench", "deviceType": "mobile", "deviceFingerprint": "bench-fp", "publicKey": pub, "keyAlgorithm": "ES256"}).Data(b, &c)
	if r := srv.Public(b, http.MethodPost, "/api/v1/auth/devices/register/verify", ts.AccessToken, map[string]any{"sessionId": c.SessionID, "signedChallenge": sign(c.Challenge)}); r.Status != 200 {
		b.Fatalf("register: %d %s", r.Status, r.Body)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var m struct{ Challenge, SessionID string }
		srv.Public(b, http.MethodPost, "/api/v1/auth/mobile/challenge", "", map[string]any{"deviceFingerprint": "bench-fp"}).Data(b, &m)
		if r := srv.Public(b, http.MethodPost, "/api/v1/auth/mobile/biometric", "", map[string]any{"sessionId": m.SessionID, "signedChallenge": sign(m.Challenge)}); r.Status != 200 {
			b.Fatalf("login: %d %s", r.Status, r.Body)
		}
	}
}
