package devicekey_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pvpipe/pvauth/devicekey"
	"github.com/pvpipe/pvauth/internal/testkeys"
)

func TestKeysParseAndVerifyEveryCombination(t *testing.T) {
	k := testkeys.KeySet(t)
	msg := make([]byte, 32)
	if _, err := rand.Read(msg); err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(msg)
	n := 0
	for _, sg := range testkeys.Signers(k) {
		pub := sg.Priv.Public()
		for _, f := range testkeys.KeyFormats(t, pub) {
			t.Run(sg.Name+"/"+f.Name, func(t *testing.T) {
				got, pemOut, err := devicekey.ParsePublicKey(f.Value, sg.Alg)
				if err != nil {
					t.Fatalf("ParsePublicKey: %v", err)
				}
				if !got.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
					t.Fatalf("parsed key differs from the original")
				}
				if want := testkeys.PEM("PUBLIC KEY", testkeys.MustDER(t, pub)); pemOut != want {
					t.Fatalf("canonical PEM:\n%s\nwant\n%s", pemOut, want)
				}
				// The canonical form is what is stored: it must parse again to the same key.
				again, pemAgain, err := devicekey.ParsePublicKey(pemOut, sg.Alg)
				if err != nil || pemAgain != pemOut || !again.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
					t.Fatalf("canonical PEM does not round-trip: %v", err)
				}
				for _, se := range testkeys.SigEncodings(sg.Alg) {
					raw := testkeys.Sign(t, sg.Priv, sg.Alg, se, msg)
					if err := devicekey.VerifyDigest(got, sg.Alg, digest[:], raw); err != nil {
						t.Errorf("%s: VerifyDigest: %v", se, err)
					}
					for _, b := range testkeys.B64 {
						s := testkeys.SignB64(t, sg.Priv, sg.Alg, se, b.Enc, msg)
						if err := devicekey.VerifyEncoded(got, sg.Alg, digest[:], s); err != nil {
							t.Errorf("%s/%s (%q): VerifyEncoded: %v", se, b.Name, s, err)
						}
						n++
					}
				}
			})
		}
	}
	t.Logf("%d key format × algorithm × signature encoding × base64 combinations verified", n)
}

func TestKeysES256RawSignatureWithShortRAndS(t *testing.T) {
	// r and s below 2^248 still travel as 32 bytes each (left-padded with zeros).
	k := testkeys.KeySet(t)
	digest := sha256.Sum256([]byte("short r/s"))
	for i := 0; i < 2000; i++ {
		r, s, err := ecdsa.Sign(rand.Reader, k.EC, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		if r.BitLen() > 248 && s.BitLen() > 248 {
			continue
		}
		raw := make([]byte, 64)
		r.FillBytes(raw[:32])
		s.FillBytes(raw[32:])
		if err := devicekey.VerifyDigest(&k.EC.PublicKey, devicekey.AlgES256, digest[:], raw); err != nil {
			t.Fatalf("raw signature with a short r or s: %v", err)
		}
		der := ktECDSADER(r, s)
		if err := devicekey.VerifyDigest(&k.EC.PublicKey, devicekey.AlgES256, digest[:], der); err != nil {
			t.Fatalf("DER signature with a short r or s: %v", err)
		}
		return
	}
	t.Skip("no signature with a short r or s in 2000 tries")
}

// ktECDSADER encodes r, s as an ASN.1 ECDSA-Sig-Value.
func ktECDSADER(r, s *big.Int) []byte {
	enc := func(v *big.Int) []byte {
		b := v.Bytes()
		if len(b) == 0 || b[0]&0x80 != 0 {
			b = append([]byte{0}, b...)
		}
		return append([]byte{0x02, byte(len(b))}, b...)
	}
	body := append(enc(r), enc(s)...)
	return append([]byte{0x30, byte(len(body))}, body...)
}

func TestKeysPSSSaltLengths(t *testing.T) {
	k := testkeys.KeySet(t)
	digest := sha256.Sum256([]byte("pss salt"))
	for _, priv := range []*rsa.PrivateKey{k.RSA2048, k.RSA3072} {
		for _, c := range []struct {
			name string
			salt int
		}{
			{"32", 32},
			{"equals-hash", rsa.PSSSaltLengthEqualsHash},
			{"auto(max)", rsa.PSSSaltLengthAuto},
			{"max-explicit", (priv.N.BitLen()-1+7)/8 - 2 - 32},
			{"0", 0},
			{"20", 20},
			{"64", 64},
		} {
			t.Run(fmt.Sprintf("%d/%s", priv.N.BitLen(), c.name), func(t *testing.T) {
				sig, err := rsa.SignPSS(rand.Reader, priv, crypto.SHA256, digest[:], &rsa.PSSOptions{SaltLength: c.salt})
				if err != nil {
					t.Fatal(err)
				}
				if err := devicekey.VerifyDigest(&priv.PublicKey, devicekey.AlgPS256, digest[:], sig); err != nil {
					t.Fatalf("PS256 with salt %s: %v", c.name, err)
				}
				if err := devicekey.VerifyEncoded(&priv.PublicKey, devicekey.AlgPS256, digest[:], base64.RawURLEncoding.EncodeToString(sig)); err != nil {
					t.Fatalf("PS256 with salt %s, url base64: %v", c.name, err)
				}
				// A PSS signature is never a PKCS#1 v1.5 one.
				if err := devicekey.VerifyDigest(&priv.PublicKey, devicekey.AlgRS256, digest[:], sig); !errors.Is(err, devicekey.ErrSignature) {
					t.Fatalf("PS256 signature accepted as RS256: %v", err)
				}
			})
		}
	}
}

func TestKeysRejected(t *testing.T) {
	k := testkeys.KeySet(t)
	ecSPKI := testkeys.MustDER(t, &k.EC.PublicKey)
	rsaSPKI := testkeys.MustDER(t, &k.RSA2048.PublicKey)
	p384SPKI := testkeys.MustDER(t, &k.P384.PublicKey)
	rsa1024SPKI := testkeys.MustDER(t, &k.RSA1024.PublicKey)
	edSPKI := testkeys.MustDER(t, k.Ed)
	pt, _ := k.EC.PublicKey.Bytes()

	offCurve := bytes.Clone(pt)
	offCurve[64] ^= 0x01 // y+1 (or y-1): not on the curve
	zeroPoint := make([]byte, 65)
	zeroPoint[0] = 4
	compressed := elliptic.MarshalCompressed(elliptic.P256(), k.EC.PublicKey.X, k.EC.PublicKey.Y) //nolint:staticcheck // building a test input
	p384Point, _ := k.P384.PublicKey.Bytes()

	// A real certificate holding the (acceptable) P-256 key: still the wrong block type.
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "device"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	cert, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.EC.PublicKey, k.EC)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8EC, _ := x509.MarshalPKCS8PrivateKey(k.EC)
	pkcs8RSA, _ := x509.MarshalPKCS8PrivateKey(k.RSA2048)
	sec1, _ := x509.MarshalECPrivateKey(k.EC)

	// A PKCS#1 structure with a 8200-bit modulus: above the 8192-bit ceiling.
	bigN := new(big.Int).Lsh(big.NewInt(1), 8199)
	bigN.Add(bigN, big.NewInt(1))
	huge := x509.MarshalPKCS1PublicKey(&rsa.PublicKey{N: bigN, E: 65537})

	std := base64.StdEncoding.EncodeToString
	cases := []struct {
		name, key, alg string
	}{
		{"P-384 PEM for ES256", testkeys.PEM("PUBLIC KEY", p384SPKI), devicekey.AlgES256},
		{"P-384 b64 SPKI for ES256", std(p384SPKI), devicekey.AlgES256},
		{"P-384 97-byte point for ES256", std(p384Point), devicekey.AlgES256},
		{"RSA-1024 PEM for RS256", testkeys.PEM("PUBLIC KEY", rsa1024SPKI), devicekey.AlgRS256},
		{"RSA-1024 PEM for PS256", testkeys.PEM("PUBLIC KEY", rsa1024SPKI), devicekey.AlgPS256},
		{"RSA-1024 PKCS#1 PEM for RS256", testkeys.PEM("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&k.RSA1024.PublicKey)), devicekey.AlgRS256},
		{"RSA-1024 b64 SPKI for PS256", std(rsa1024SPKI), devicekey.AlgPS256},
		{"RSA-8200 PKCS#1 for RS256", std(huge), devicekey.AlgRS256},
		{"EC PEM for RS256", testkeys.PEM("PUBLIC KEY", ecSPKI), devicekey.AlgRS256},
		{"EC PEM for PS256", testkeys.PEM("PUBLIC KEY", ecSPKI), devicekey.AlgPS256},
		{"EC b64 SPKI for RS256", std(ecSPKI), devicekey.AlgRS256},
		{"EC 65-byte point for RS256", std(pt), devicekey.AlgRS256},
		{"EC 65-byte point for PS256", std(pt), devicekey.AlgPS256},
		{"RSA PEM for ES256", testkeys.PEM("PUBLIC KEY", rsaSPKI), devicekey.AlgES256},
		{"RSA PKCS#1 PEM for ES256", testkeys.PEM("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&k.RSA2048.PublicKey)), devicekey.AlgES256},
		{"RSA b64 SPKI for ES256", std(rsaSPKI), devicekey.AlgES256},
		{"RSA b64 PKCS#1 for ES256", std(x509.MarshalPKCS1PublicKey(&k.RSA2048.PublicKey)), devicekey.AlgES256},
		{"ed25519 PEM for ES256", testkeys.PEM("PUBLIC KEY", edSPKI), devicekey.AlgES256},
		{"ed25519 PEM for RS256", testkeys.PEM("PUBLIC KEY", edSPKI), devicekey.AlgRS256},
		{"ed25519 PEM for PS256", testkeys.PEM("PUBLIC KEY", edSPKI), devicekey.AlgPS256},
		{"ed25519 b64 SPKI for ES256", std(edSPKI), devicekey.AlgES256},
		{"ed25519 raw 32 bytes for ES256", std(k.Ed), devicekey.AlgES256},
		{"garbage PEM body", "-----BEGIN PUBLIC KEY-----\nthis is not base64 at all!!\n-----END PUBLIC KEY-----\n", devicekey.AlgES256},
		{"PEM with valid base64 but no DER", testkeys.PEM("PUBLIC KEY", []byte("hello, world, this is not DER")), devicekey.AlgES256},
		{"PEM without END line", "-----BEGIN PUBLIC KEY-----\n" + std(ecSPKI) + "\n", devicekey.AlgES256},
		{"PEM BEGIN only", "-----BEGIN", devicekey.AlgES256},
		{"PEM of PKCS#1 labelled PUBLIC KEY", testkeys.PEM("PUBLIC KEY", x509.MarshalPKCS1PublicKey(&k.RSA2048.PublicKey)), devicekey.AlgRS256},
		{"PEM of SPKI labelled RSA PUBLIC KEY", testkeys.PEM("RSA PUBLIC KEY", rsaSPKI), devicekey.AlgRS256},
		{"CERTIFICATE block", testkeys.PEM("CERTIFICATE", cert), devicekey.AlgES256},
		{"PRIVATE KEY block (EC)", testkeys.PEM("PRIVATE KEY", pkcs8EC), devicekey.AlgES256},
		{"PRIVATE KEY block (RSA)", testkeys.PEM("PRIVATE KEY", pkcs8RSA), devicekey.AlgRS256},
		{"EC PRIVATE KEY block", testkeys.PEM("EC PRIVATE KEY", sec1), devicekey.AlgES256},
		{"RSA PRIVATE KEY block", testkeys.PEM("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k.RSA2048)), devicekey.AlgRS256},
		{"b64 certificate DER", std(cert), devicekey.AlgES256},
		{"b64 PKCS#8 private key", std(pkcs8EC), devicekey.AlgES256},
		{"truncated EC SPKI DER", std(ecSPKI[:len(ecSPKI)-10]), devicekey.AlgES256},
		{"truncated EC SPKI DER by one byte", std(ecSPKI[:len(ecSPKI)-1]), devicekey.AlgES256},
		{"truncated RSA SPKI DER", std(rsaSPKI[:len(rsaSPKI)-20]), devicekey.AlgRS256},
		{"truncated RSA PKCS#1 DER", std(x509.MarshalPKCS1PublicKey(&k.RSA2048.PublicKey)[:200]), devicekey.AlgRS256},
		{"truncated DER in PEM", testkeys.PEM("PUBLIC KEY", ecSPKI[:len(ecSPKI)-5]), devicekey.AlgES256},
		{"EC SPKI DER with trailing data", std(append(bytes.Clone(ecSPKI), 0)), devicekey.AlgES256},
		{"65-byte point not on the curve", std(offCurve), devicekey.AlgES256},
		{"65-byte point not on the curve, url", base64.RawURLEncoding.EncodeToString(offCurve), devicekey.AlgES256},
		{"65-byte all-zero point", std(zeroPoint), devicekey.AlgES256},
		{"65 bytes not starting 0x04", std(append([]byte{0x05}, pt[1:]...)), devicekey.AlgES256},
		{"64-byte point without prefix", std(pt[1:]), devicekey.AlgES256},
		{"33-byte compressed point", std(compressed), devicekey.AlgES256},
		{"empty", "", devicekey.AlgES256},
		{"empty RS256", "", devicekey.AlgRS256},
		{"whitespace", " \n\t ", devicekey.AlgES256},
		{"not base64", "not a key!", devicekey.AlgES256},
		{"mixed base64 alphabets", "ab+c-d/e_f", devicekey.AlgES256},
		{"too long", strings.Repeat("A", 9000), devicekey.AlgES256},
		{"too long PEM", "-----BEGIN PUBLIC KEY-----\n" + strings.Repeat("A", 9000) + "\n-----END PUBLIC KEY-----", devicekey.AlgES256},
		{"unknown algorithm", testkeys.PEM("PUBLIC KEY", ecSPKI), "ES384"},
		{"lower-case algorithm", testkeys.PEM("PUBLIC KEY", ecSPKI), "es256"},
		{"empty algorithm", testkeys.PEM("PUBLIC KEY", rsaSPKI), ""},
		{"EdDSA algorithm", testkeys.PEM("PUBLIC KEY", edSPKI), "EdDSA"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pub, pemOut, err := devicekey.ParsePublicKey(c.key, c.alg)
			if err == nil {
				t.Fatalf("accepted (%T), PEM %q", pub, pemOut)
			}
			var ke *devicekey.KeyError
			if !errors.As(err, &ke) {
				t.Fatalf("error %T %v is not a *KeyError", err, err)
			}
			if !strings.HasPrefix(err.Error(), "Invalid public key format") {
				t.Fatalf("message %q does not start with the contract's words", err)
			}
			if pub != nil || pemOut != "" {
				t.Fatalf("returned a key with the error")
			}
		})
	}
}

func TestKeysSignatureRejected(t *testing.T) {
	k := testkeys.KeySet(t)
	msg := []byte("the challenge bytes, 32 of them!")
	other := []byte("another challenge, 32 bytes long")
	digest := sha256.Sum256(msg)

	flip := func(b []byte, i int) []byte { c := bytes.Clone(b); c[i] ^= 0x01; return c }
	std := base64.StdEncoding.EncodeToString

	for _, sg := range []testkeys.Signer{
		{Name: "ES256", Alg: devicekey.AlgES256, Priv: k.EC},
		{Name: "RS256-2048", Alg: devicekey.AlgRS256, Priv: k.RSA2048},
		{Name: "RS256-3072", Alg: devicekey.AlgRS256, Priv: k.RSA3072},
		{Name: "PS256-2048", Alg: devicekey.AlgPS256, Priv: k.RSA2048},
		{Name: "PS256-3072", Alg: devicekey.AlgPS256, Priv: k.RSA3072},
	} {
		pub := sg.Priv.Public()
		var otherKey crypto.Signer = k.EC2
		if sg.Alg != devicekey.AlgES256 {
			otherKey = k.RSA2048b
		}
		for _, se := range testkeys.SigEncodings(sg.Alg) {
			good := testkeys.Sign(t, sg.Priv, sg.Alg, se, msg)
			if err := devicekey.VerifyDigest(pub, sg.Alg, digest[:], good); err != nil {
				t.Fatalf("%s/%s: the good signature fails: %v", sg.Name, se, err)
			}
			cases := map[string]string{
				"truncated by one byte":   std(good[:len(good)-1]),
				"truncated to half":       std(good[:len(good)/2]),
				"one byte":                std(good[:1]),
				"extended by a zero byte": std(append(bytes.Clone(good), 0)),
				"bit-flipped first byte":  std(flip(good, 0)),
				"bit-flipped middle":      std(flip(good, len(good)/2)),
				"bit-flipped last byte":   std(flip(good, len(good)-1)),
				"by another key":          std(testkeys.Sign(t, otherKey, sg.Alg, se, msg)),
				"over another message":    std(testkeys.Sign(t, sg.Priv, sg.Alg, se, other)),
				"empty":                   "",
				"only padding":            "====",
				"whitespace":              " \n ",
				"non-base64":              "***not base64***",
				"mixed alphabets":         strings.Replace(strings.Replace(std(good), "A", "-", 1), "B", "+", 1) + "+-",
				"5 KB long":               std(bytes.Repeat(good, 5*1024/len(good)+1))[:5*1024],
				"5 KB of valid base64":    std(make([]byte, 3840)),
				"2250 bytes in 3 KB":      std(bytes.Repeat(good, 2250/len(good)+1)[:2250]),
				"all zeros":               std(make([]byte, len(good))),
				"all 0xff":                std(bytes.Repeat([]byte{0xff}, len(good))),
			}
			if sg.Alg == devicekey.AlgES256 {
				n := elliptic.P256().Params().N
				zero64 := make([]byte, 64)
				rN := make([]byte, 64) // r = N, s = N: out of range
				n.FillBytes(rN[:32])
				n.FillBytes(rN[32:])
				cases["raw r=0 s=0"] = std(zero64)
				cases["raw r=N s=N"] = std(rN)
				cases["raw 65 bytes"] = std(append(testkeys.Sign(t, sg.Priv, sg.Alg, "raw-r||s", msg), 0))
				cases["raw 63 bytes"] = std(testkeys.Sign(t, sg.Priv, sg.Alg, "raw-r||s", msg)[:63])
				cases["DER with trailing byte"] = std(append(testkeys.Sign(t, sg.Priv, sg.Alg, "der", msg), 0))
				cases["96 zero bytes (P-384 raw size)"] = std(make([]byte, 96))
			} else {
				other := devicekey.AlgRS256
				if sg.Alg == devicekey.AlgRS256 {
					other = devicekey.AlgPS256
				}
				cases["signed as "+other] = std(testkeys.Sign(t, sg.Priv, other, "as-is", msg))
			}
			for name, s := range cases {
				t.Run(sg.Name+"/"+se+"/"+name, func(t *testing.T) {
					err := devicekey.VerifyEncoded(pub, sg.Alg, digest[:], s)
					if err != devicekey.ErrSignature { //nolint:errorlint // the exact sentinel is the contract
						t.Fatalf("got %v, want ErrSignature", err)
					}
					if err.Error() != "Invalid signature: signature verification failed" {
						t.Fatalf("message %q", err)
					}
				})
			}
		}
	}

	t.Run("wrong key type for the algorithm", func(t *testing.T) {
		esSig := testkeys.Sign(t, k.EC, devicekey.AlgES256, "der", msg)
		rsSig := testkeys.Sign(t, k.RSA2048, devicekey.AlgRS256, "as-is", msg)
		psSig := testkeys.Sign(t, k.RSA2048, devicekey.AlgPS256, "as-is", msg)
		for name, err := range map[string]error{
			"RSA key, ES256":   devicekey.VerifyDigest(&k.RSA2048.PublicKey, devicekey.AlgES256, digest[:], esSig),
			"EC key, RS256":    devicekey.VerifyDigest(&k.EC.PublicKey, devicekey.AlgRS256, digest[:], rsSig),
			"EC key, PS256":    devicekey.VerifyDigest(&k.EC.PublicKey, devicekey.AlgPS256, digest[:], psSig),
			"ed25519, ES256":   devicekey.VerifyDigest(k.Ed, devicekey.AlgES256, digest[:], esSig),
			"nil key, RS256":   devicekey.VerifyDigest(nil, devicekey.AlgRS256, digest[:], rsSig),
			"unknown alg":      devicekey.VerifyDigest(&k.EC.PublicKey, "ES384", digest[:], esSig),
			"short digest":     devicekey.VerifyDigest(&k.EC.PublicKey, devicekey.AlgES256, digest[:31], esSig),
			"empty digest":     devicekey.VerifyDigest(&k.RSA2048.PublicKey, devicekey.AlgRS256, nil, rsSig),
			"nil signature":    devicekey.VerifyDigest(&k.EC.PublicKey, devicekey.AlgES256, digest[:], nil),
			"message as input": devicekey.VerifyDigest(&k.EC.PublicKey, devicekey.AlgES256, msg, esSig), // unhashed
		} {
			if err != devicekey.ErrSignature { //nolint:errorlint
				t.Errorf("%s: got %v, want ErrSignature", name, err)
			}
		}
	})
}

func TestKeysDecodeBase64(t *testing.T) {
	data := []byte{0xfb, 0xff, 0xbf, 0x00, 0x01, 0xfe, 0xef} // encodes with + / (std) and - _ (url)
	for name, s := range map[string]string{
		"std padded":       base64.StdEncoding.EncodeToString(data),
		"std unpadded":     base64.RawStdEncoding.EncodeToString(data),
		"url padded":       base64.URLEncoding.EncodeToString(data),
		"url unpadded":     base64.RawURLEncoding.EncodeToString(data),
		"line breaks":      "+/+/\nAAH+\r\n7w==",
		"surrounding ws":   " \t" + base64.StdEncoding.EncodeToString(data) + "\n",
		"mime-wrapped std": ktWrap76(base64.StdEncoding.EncodeToString(bytes.Repeat(data, 20))),
	} {
		got, err := devicekey.DecodeBase64(s)
		want := data
		if name == "mime-wrapped std" {
			want = bytes.Repeat(data, 20)
		}
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s (%q): %x, %v", name, s, got, err)
		}
	}
	for name, s := range map[string]string{
		"empty":           "",
		"only whitespace": " \n",
		"only padding":    "==",
		"mixed alphabets": "+/-_",
		"bad character":   "ab*d",
		"one char":        "A",
		"five chars":      "AAAAA",
	} {
		if got, err := devicekey.DecodeBase64(s); err == nil && len(got) > 0 {
			t.Errorf("%s (%q): accepted as %x", name, s, got)
		}
	}
}

func ktWrap76(s string) string {
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	b.WriteString(s)
	return b.String()
}

// ---------------------------------------------------------------------------------------
// Compatibility with the openssl CLI, as the README walkthrough uses it.

func ktOpenSSL(t *testing.T, dir string, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Dir = dir
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

func TestKeysOpenSSLCompatibility(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed")
	}
	dir := t.TempDir()
	msg := make([]byte, 32)
	if _, err := rand.Read(msg); err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(msg)
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	type keyCase struct {
		name   string
		genArg []string
		algs   map[string][][]string // alg -> list of extra dgst args (one signature each)
	}
	for _, kc := range []keyCase{
		{"ec-p256", []string{"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"},
			map[string][][]string{devicekey.AlgES256: {nil}}},
		{"rsa-2048", []string{"-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"},
			map[string][][]string{
				devicekey.AlgRS256: {nil},
				devicekey.AlgPS256: {
					{"-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32"},
					{"-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"},
					{"-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:max"},
					{"-sigopt", "rsa_padding_mode:pss"},
				},
			}},
		{"rsa-3072", []string{"-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"},
			map[string][][]string{
				devicekey.AlgRS256: {nil},
				devicekey.AlgPS256: {{"-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32"}},
			}},
	} {
		t.Run(kc.name, func(t *testing.T) {
			key := kc.name + ".key"
			ktOpenSSL(t, dir, nil, append([]string{"genpkey"}, append(kc.genArg, "-out", key)...)...)
			pubPEM := string(ktOpenSSL(t, dir, nil, "pkey", "-in", key, "-pubout"))
			pubDER := ktOpenSSL(t, dir, nil, "pkey", "-in", key, "-pubout", "-outform", "DER")
			forms := []testkeys.Format{
				{Name: "openssl pkey -pubout (PEM)", Value: pubPEM},
				{Name: "openssl pkey -pubout -outform DER | base64", Value: base64.StdEncoding.EncodeToString(pubDER)},
			}
			if strings.HasPrefix(kc.name, "rsa") {
				forms = append(forms, testkeys.Format{Name: "openssl rsa -RSAPublicKey_out", Value: string(ktOpenSSL(t, dir, nil, "rsa", "-in", key, "-RSAPublicKey_out"))})
			} else {
				// The uncompressed point is the tail of a P-256 SPKI (what iOS exports).
				forms = append(forms, testkeys.Format{Name: "raw point from the SPKI", Value: base64.StdEncoding.EncodeToString(pubDER[len(pubDER)-65:])})
			}
			for alg, variants := range kc.algs {
				for _, f := range forms {
					pub, _, err := devicekey.ParsePublicKey(f.Value, alg)
					if err != nil {
						t.Fatalf("%s %s: %v", alg, f.Name, err)
					}
					for _, extra := range variants {
						args := append([]string{"dgst", "-sha256", "-sign", key}, extra...)
						sig := ktOpenSSL(t, dir, msg, args...)
						for _, b := range testkeys.B64 {
							if err := devicekey.VerifyEncoded(pub, alg, digest[:], b.Enc.EncodeToString(sig)); err != nil {
								t.Errorf("%s key %s, openssl %v, %s: %v", alg, f.Name, extra, b.Name, err)
							}
						}
					}
				}
			}
		})
	}

	// The README pipeline, literally: base64 -d | openssl dgst -sha256 -sign | base64 -w0.
	t.Run("README pipeline", func(t *testing.T) {
		sh, err := exec.LookPath("sh")
		if err != nil {
			t.Skip("no sh")
		}
		if _, err := exec.LookPath("base64"); err != nil {
			t.Skip("no base64 tool")
		}
		script := `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out device.key &&
openssl pkey -in device.key -pubout -out device.pub &&
echo "$CHALLENGE" | base64 -d | openssl dgst -sha256 -sign device.key | base64 -w0`
		chal := base64.StdEncoding.EncodeToString(msg)
		cmd := exec.Command(sh, "-c", script)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CHALLENGE="+chal)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		sig, err := cmd.Output()
		if err != nil {
			t.Fatalf("pipeline: %v\n%s", err, stderr.String())
		}
		pub, _, err := devicekey.ParsePublicKey(string(read("device.pub")), devicekey.AlgES256)
		if err != nil {
			t.Fatal(err)
		}
		if err := devicekey.VerifyEncoded(pub, devicekey.AlgES256, digest[:], string(sig)); err != nil {
			t.Fatalf("README signature %q: %v", sig, err)
		}
	})
}
