// Package testkeys holds the device keys and signing helpers of the device-key tests
// (devicekey) and of the HTTP tests that register and sign like real devices (biometric).
package testkeys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/pvpipe/pvauth/devicekey"
)

// ---------------------------------------------------------------------------------------
// Key material shared by keys_test.go, matrix_test.go and fuzz_test.go. Keys are made once
// per test binary (RSA-3072 generation is slow under -race).

type KeyMaterial struct {
	EC, EC2  *ecdsa.PrivateKey // P-256
	P384     *ecdsa.PrivateKey
	RSA2048  *rsa.PrivateKey
	RSA2048b *rsa.PrivateKey
	RSA3072  *rsa.PrivateKey
	RSA1024  *rsa.PrivateKey
	Ed       ed25519.PublicKey
}

var (
	once    sync.Once
	keys    *KeyMaterial
	keysErr error
)

// KeySet returns the shared keys. The first P-256 key is picked so that its base64
// forms contain URL-safe characters, which makes the URL-safe cases meaningful.
func KeySet(t testing.TB) *KeyMaterial {
	t.Helper()
	once.Do(func() {
		k := &KeyMaterial{}
		for i := 0; ; i++ {
			ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				keysErr = err
				return
			}
			k.EC = ec
			der, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
			pt, _ := ec.PublicKey.Bytes()
			if strings.ContainsAny(base64.RawURLEncoding.EncodeToString(der), "-_") &&
				strings.ContainsAny(base64.RawURLEncoding.EncodeToString(pt), "-_") || i > 100 {
				break
			}
		}
		var err error
		if k.EC2, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			keysErr = err
			return
		}
		if k.P384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
			keysErr = err
			return
		}
		for _, r := range []struct {
			dst  **rsa.PrivateKey
			bits int
		}{{&k.RSA2048, 2048}, {&k.RSA2048b, 2048}, {&k.RSA3072, 3072}, {&k.RSA1024, 1024}} {
			if *r.dst, err = rsa.GenerateKey(rand.Reader, r.bits); err != nil {
				keysErr = fmt.Errorf("rsa %d: %w", r.bits, err)
				return
			}
		}
		if k.Ed, _, err = ed25519.GenerateKey(rand.Reader); err != nil {
			keysErr = err
			return
		}
		keys = k
	})
	if keysErr != nil {
		t.Fatalf("generating test keys: %v", keysErr)
	}
	return keys
}

// Signer is a device key under one algorithm.
type Signer struct {
	Name string
	Alg  string
	Priv crypto.Signer
}

// Signers lists every accepted algorithm/key-size pairing.
func Signers(k *KeyMaterial) []Signer {
	return []Signer{
		{"ES256-P256", devicekey.AlgES256, k.EC},
		{"RS256-2048", devicekey.AlgRS256, k.RSA2048},
		{"RS256-3072", devicekey.AlgRS256, k.RSA3072},
		{"PS256-2048", devicekey.AlgPS256, k.RSA2048},
		{"PS256-3072", devicekey.AlgPS256, k.RSA3072},
	}
}

type Format struct {
	Name  string
	Value string
}

func MustDER(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func PEM(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

// PublicPEM is pub as SPKI in a PUBLIC KEY block (exportPublicKeyToPEM of the apps).
func PublicPEM(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	return PEM("PUBLIC KEY", MustDER(t, pub))
}

// NewES256 is a fresh P-256 key, as a device generates one.
func NewES256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// KeyFormats returns every accepted encoding of pub.
func KeyFormats(t testing.TB, pub crypto.PublicKey) []Format {
	t.Helper()
	spki := MustDER(t, pub)
	pemSPKI := PEM("PUBLIC KEY", spki)
	out := []Format{
		{"pem-spki", pemSPKI},
		{"pem-spki-json-escaped-newlines", strings.ReplaceAll(pemSPKI, "\n", `\n`)},
		{"pem-spki-crlf", strings.ReplaceAll(pemSPKI, "\n", "\r\n")},
		{"b64-spki-std-padded", base64.StdEncoding.EncodeToString(spki)},
		{"b64-spki-std-unpadded", base64.RawStdEncoding.EncodeToString(spki)},
		{"b64-spki-url-unpadded", base64.RawURLEncoding.EncodeToString(spki)},
		{"b64-spki-url-padded", base64.URLEncoding.EncodeToString(spki)},
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		pk1 := x509.MarshalPKCS1PublicKey(k)
		pemPK1 := PEM("RSA PUBLIC KEY", pk1)
		out = append(out,
			Format{"pem-pkcs1", pemPK1},
			Format{"pem-pkcs1-json-escaped-newlines", strings.ReplaceAll(pemPK1, "\n", `\n`)},
			Format{"b64-pkcs1-std-padded", base64.StdEncoding.EncodeToString(pk1)},
			Format{"b64-pkcs1-url-unpadded", base64.RawURLEncoding.EncodeToString(pk1)},
		)
	case *ecdsa.PublicKey:
		pt, err := k.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if len(pt) != 65 || pt[0] != 4 {
			t.Fatalf("uncompressed point is %d bytes", len(pt))
		}
		out = append(out,
			Format{"b64-point65-std-padded", base64.StdEncoding.EncodeToString(pt)},
			Format{"b64-point65-url-unpadded", base64.RawURLEncoding.EncodeToString(pt)},
		)
	}
	return out
}

// SigEncodings: ES256 signatures in DER and raw r||s; RSA signatures as they are.
func SigEncodings(alg string) []string {
	if alg == devicekey.AlgES256 {
		return []string{"der", "raw-r||s"}
	}
	return []string{"as-is"}
}

// B64 are the signature base64 forms clients send.
var B64 = []struct {
	Name string
	Enc  *base64.Encoding
}{
	{"std-padded", base64.StdEncoding},
	{"std-unpadded", base64.RawStdEncoding},
	{"url-unpadded", base64.RawURLEncoding},
}

// Sign signs SHA-256(msg) with priv under alg; sigEnc picks DER or raw for ES256.
func Sign(t testing.TB, priv crypto.Signer, alg, sigEnc string, msg []byte) []byte {
	t.Helper()
	digest := sha256.Sum256(msg)
	switch alg {
	case devicekey.AlgES256:
		k := priv.(*ecdsa.PrivateKey)
		if sigEnc == "raw-r||s" {
			r, s, err := ecdsa.Sign(rand.Reader, k, digest[:])
			if err != nil {
				t.Fatal(err)
			}
			out := make([]byte, 64)
			r.FillBytes(out[:32])
			s.FillBytes(out[32:])
			return out
		}
		sig, err := ecdsa.SignASN1(rand.Reader, k, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		return sig
	case devicekey.AlgRS256:
		sig, err := rsa.SignPKCS1v15(rand.Reader, priv.(*rsa.PrivateKey), crypto.SHA256, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		return sig
	case devicekey.AlgPS256:
		sig, err := rsa.SignPSS(rand.Reader, priv.(*rsa.PrivateKey), crypto.SHA256, digest[:],
			&rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	t.Fatalf("unknown alg %s", alg)
	return nil
}

// SignB64 signs and encodes; for the URL-safe form it re-signs (ECDSA is randomized)
// until the encoding really uses '-' or '_', so the case tests what it names.
func SignB64(t testing.TB, priv crypto.Signer, alg, sigEnc string, enc *base64.Encoding, msg []byte) string {
	t.Helper()
	for i := 0; ; i++ {
		s := enc.EncodeToString(Sign(t, priv, alg, sigEnc, msg))
		if enc != base64.RawURLEncoding || strings.ContainsAny(s, "-_") || alg != devicekey.AlgES256 || i > 50 {
			return s
		}
	}
}

// ---------------------------------------------------------------------------------------

// SignChallenge signs a challenge as the mobile app does: the base64 challenge decoded,
// ECDSA P-256 over its SHA-256, DER, standard base64.
func SignChallenge(t testing.TB, priv *ecdsa.PrivateKey, challenge string) string {
	t.Helper()
	msg, err := base64.StdEncoding.DecodeString(challenge)
	if err != nil {
		t.Fatalf("challenge %q: %v", challenge, err)
	}
	return base64.StdEncoding.EncodeToString(Sign(t, priv, devicekey.AlgES256, "der", msg))
}
