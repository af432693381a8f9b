package devicekey

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// Key algorithms a device may register.
const (
	AlgES256 = "ES256"
	AlgRS256 = "RS256"
	AlgPS256 = "PS256"
)

// Limits that keep parsing cheap whatever a client sends.
const (
	maxPublicKeyLen = 8192
	maxSignatureLen = 2048
	minRSABits      = 2048
	maxRSABits      = 8192
)

// KeyError is a public key that cannot be used; its message starts with the contract's
// "Invalid public key format".
type KeyError struct{ reason string }

func (e *KeyError) Error() string { return "Invalid public key format: " + e.reason }

func keyErr(format string, args ...any) error { return &KeyError{reason: fmt.Sprintf(format, args...)} }

// ParsePublicKey accepts a device key in any of the forms mobile platforms produce and
// checks that it fits alg:
//   - PEM "PUBLIC KEY" (SPKI) or "RSA PUBLIC KEY" (PKCS#1), also with JSON-escaped "\n";
//   - bare base64 (standard or URL-safe, padded or not) of SPKI or PKCS#1 DER;
//   - for ES256, base64 of the 65-byte uncompressed P-256 point (iOS
//     SecKeyCopyExternalRepresentation).
//
// It returns the key and its canonical SPKI PEM, the form it is stored and shown in.
func ParsePublicKey(s, alg string) (crypto.PublicKey, string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, "", keyErr("the key is empty")
	}
	if len(s) > maxPublicKeyLen {
		return nil, "", keyErr("the key is longer than %d characters", maxPublicKeyLen)
	}
	var (
		pub crypto.PublicKey
		err error
	)
	if strings.Contains(s, "-----BEGIN") {
		pub, err = parsePEM(strings.ReplaceAll(s, `\n`, "\n"))
	} else {
		var raw []byte
		raw, err = DecodeBase64(s)
		if err != nil {
			return nil, "", keyErr("not valid PEM encoding or base64")
		}
		pub, err = parseDER(raw, alg)
	}
	if err != nil {
		return nil, "", err
	}
	if err := checkAlgorithm(pub, alg); err != nil {
		return nil, "", err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, "", keyErr("cannot encode the key")
	}
	return pub, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

func parsePEM(s string) (crypto.PublicKey, error) {
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		return nil, keyErr("not valid PEM encoding")
	}
	switch block.Type {
	case "PUBLIC KEY":
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, keyErr("the PUBLIC KEY block is not a valid SPKI structure")
		}
		return pub, nil
	case "RSA PUBLIC KEY":
		pub, err := x509.ParsePKCS1PublicKey(block.Bytes)
		if err != nil {
			return nil, keyErr("the RSA PUBLIC KEY block is not a valid PKCS#1 structure")
		}
		return pub, nil
	default:
		return nil, keyErr("unsupported PEM block %q (want PUBLIC KEY or RSA PUBLIC KEY)", block.Type)
	}
}

func parseDER(raw []byte, alg string) (crypto.PublicKey, error) {
	if alg == AlgES256 && len(raw) == 65 && raw[0] == 0x04 {
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
		if err != nil {
			return nil, keyErr("the 65-byte value is not a point on P-256")
		}
		return pub, nil
	}
	if pub, err := x509.ParsePKIXPublicKey(raw); err == nil {
		return pub, nil
	}
	if pub, err := x509.ParsePKCS1PublicKey(raw); err == nil {
		return pub, nil
	}
	return nil, keyErr("not a DER SPKI or PKCS#1 public key")
}

func checkAlgorithm(pub crypto.PublicKey, alg string) error {
	switch alg {
	case AlgES256:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return keyErr("keyAlgorithm ES256 needs an EC P-256 key, got %s", keyKind(pub))
		}
		if k.Curve != elliptic.P256() {
			return keyErr("keyAlgorithm ES256 needs curve P-256, got %s", k.Curve.Params().Name)
		}
	case AlgRS256, AlgPS256:
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return keyErr("keyAlgorithm %s needs an RSA key, got %s", alg, keyKind(pub))
		}
		if n := k.N.BitLen(); n < minRSABits || n > maxRSABits {
			return keyErr("RSA keys must have %d to %d bits, got %d", minRSABits, maxRSABits, n)
		}
	default:
		return keyErr("unsupported keyAlgorithm %q", alg)
	}
	return nil
}

func keyKind(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "an EC " + k.Curve.Params().Name + " key"
	case *rsa.PublicKey:
		return "an RSA key"
	default:
		return fmt.Sprintf("a %T key", pub)
	}
}

// DecodeBase64 accepts standard and URL-safe base64, padded or not, ignoring
// surrounding whitespace and line breaks.
func DecodeBase64(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, s)
	if s == "" {
		return nil, errors.New("empty")
	}
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// ErrSignature is any signature that does not verify, whatever the reason.
var ErrSignature = errors.New("Invalid signature: signature verification failed")

// VerifyDigest checks sig over the SHA-256 digest of the signed message:
//   - ES256: ASN.1 DER (iOS, Android, node crypto.sign) or raw 64-byte r||s (WebCrypto);
//   - RS256: RSASSA-PKCS1-v1_5 with SHA-256;
//   - PS256: RSASSA-PSS with SHA-256, salt length auto-detected (32 included).
func VerifyDigest(pub crypto.PublicKey, alg string, digest []byte, sig []byte) error {
	if len(sig) == 0 || len(sig) > maxSignatureLen || len(digest) != sha256.Size {
		return ErrSignature
	}
	switch alg {
	case AlgES256:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return ErrSignature
		}
		if len(sig) == 64 {
			r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
			if ecdsa.Verify(k, digest, r, s) {
				return nil
			}
		}
		if ecdsa.VerifyASN1(k, digest, sig) {
			return nil
		}
		return ErrSignature
	case AlgRS256:
		k, ok := pub.(*rsa.PublicKey)
		if !ok || rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig) != nil {
			return ErrSignature
		}
		return nil
	case AlgPS256:
		k, ok := pub.(*rsa.PublicKey)
		if !ok || rsa.VerifyPSS(k, crypto.SHA256, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto, Hash: crypto.SHA256}) != nil {
			return ErrSignature
		}
		return nil
	default:
		return ErrSignature
	}
}

// VerifyEncoded decodes a base64 signature and verifies it (the usual call).
func VerifyEncoded(pub crypto.PublicKey, alg string, digest []byte, sigB64 string) error {
	if len(sigB64) > maxSignatureLen*2 {
		return ErrSignature
	}
	sig, err := DecodeBase64(sigB64)
	if err != nil {
		return ErrSignature
	}
	return VerifyDigest(pub, alg, digest, sig)
}
