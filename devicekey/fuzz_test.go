package devicekey_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"github.com/pvpipe/pvauth/internal/testkeys"
	"strings"
	"testing"

	"github.com/pvpipe/pvauth/devicekey"
)

// Run one target at a time, e.g.:
//
//	go test -run XXX -fuzz FuzzParsePublicKey -fuzztime 10s ./devicekey/

// FuzzParsePublicKey: never panics; every refusal is a *KeyError with the contract's
// prefix; every accepted key fits its algorithm and its canonical PEM parses back to it.
func FuzzParsePublicKey(f *testing.F) {
	k := testkeys.KeySet(f)
	for _, sg := range testkeys.Signers(k) {
		for _, fm := range testkeys.KeyFormats(f, sg.Priv.Public()) {
			f.Add(fm.Value, sg.Alg)
		}
	}
	p384, _ := k.P384.PublicKey.Bytes()
	pt, _ := k.EC.PublicKey.Bytes()
	f.Add(base64.StdEncoding.EncodeToString(p384), devicekey.AlgES256)
	f.Add(base64.StdEncoding.EncodeToString(pt), devicekey.AlgRS256)
	f.Add(testkeys.PEM("PUBLIC KEY", testkeys.MustDER(f, k.Ed)), devicekey.AlgES256)
	f.Add(testkeys.PEM("PUBLIC KEY", testkeys.MustDER(f, &k.RSA1024.PublicKey)), devicekey.AlgRS256)
	f.Add(testkeys.PEM("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&k.RSA2048.PublicKey)), devicekey.AlgPS256)
	f.Add("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----", devicekey.AlgES256)
	f.Add("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", devicekey.AlgES256)
	f.Add("BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", devicekey.AlgES256)
	f.Add("", "")
	f.Add("-----BEGIN", "ES256")
	f.Add(`-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----`, "ES256")

	f.Fuzz(func(t *testing.T, s, alg string) {
		pub, pemOut, err := devicekey.ParsePublicKey(s, alg)
		if err != nil {
			var ke *devicekey.KeyError
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
		case devicekey.AlgES256:
			ec, ok := pub.(*ecdsa.PublicKey)
			if !ok || ec.Curve != elliptic.P256() {
				t.Fatalf("ES256 accepted %T", pub)
			}
		case devicekey.AlgRS256, devicekey.AlgPS256:
			r, ok := pub.(*rsa.PublicKey)
			if !ok || r.N.BitLen() < 2048 || r.N.BitLen() > 8192 {
				t.Fatalf("%s accepted %T", alg, pub)
			}
		default:
			t.Fatalf("algorithm %q accepted", alg)
		}
		again, pemAgain, err := devicekey.ParsePublicKey(pemOut, alg)
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
		b, err := devicekey.DecodeBase64(s)
		if err != nil {
			return
		}
		if len(b) > len(s) {
			t.Fatalf("%d bytes decoded from %d characters", len(b), len(s))
		}
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.RawURLEncoding, base64.URLEncoding} {
			again, err := devicekey.DecodeBase64(enc.EncodeToString(b))
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
	k := testkeys.KeySet(f)
	msg := []byte("fuzz challenge: thirty-two bytes")
	digest := sha256.Sum256(msg)
	signers := []testkeys.Signer{
		{Name: "ES256", Alg: devicekey.AlgES256, Priv: k.EC},
		{Name: "RS256", Alg: devicekey.AlgRS256, Priv: k.RSA2048},
		{Name: "PS256", Alg: devicekey.AlgPS256, Priv: k.RSA2048},
		{Name: "RS256-3072", Alg: devicekey.AlgRS256, Priv: k.RSA3072},
	}
	for i, sg := range signers {
		for _, se := range testkeys.SigEncodings(sg.Alg) {
			for _, b := range testkeys.B64 {
				f.Add(uint8(i), b.Enc.EncodeToString(testkeys.Sign(f, sg.Priv, sg.Alg, se, msg)))
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
		err := devicekey.VerifyEncoded(pub, sg.Alg, digest[:], sig)
		if err != nil && err != devicekey.ErrSignature { //nolint:errorlint // the exact sentinel is the contract
			t.Fatalf("VerifyEncoded: %v", err)
		}
		raw, derr := devicekey.DecodeBase64(sig)
		if derr != nil || len(sig) > 4096 {
			if err == nil {
				t.Fatalf("undecodable or oversized signature %q verified", sig)
			}
			return
		}
		if err2 := devicekey.VerifyDigest(pub, sg.Alg, digest[:], raw); (err2 == nil) != (err == nil) {
			t.Fatalf("VerifyDigest %v, VerifyEncoded %v", err2, err)
		}
		// A signature for one scheme never passes as another key's.
		for _, other := range signers {
			if other.Priv == sg.Priv {
				continue
			}
			if devicekey.VerifyDigest(other.Priv.Public(), other.Alg, digest[:], raw) == nil && err == nil && other.Alg == sg.Alg {
				t.Fatalf("one signature verified under two keys")
			}
		}
		// Arbitrary raw bytes as a signature.
		if e := devicekey.VerifyDigest(pub, sg.Alg, digest[:], []byte(sig)); e != nil && e != devicekey.ErrSignature { //nolint:errorlint
			t.Fatalf("VerifyDigest on raw bytes: %v", e)
		}
	})
}

// ---------------------------------------------------------------------------------------
// Request bodies against the real endpoints (one server per target, SQLite in memory).
