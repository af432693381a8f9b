package devicekey

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
)

// NewChallenge returns 32 random bytes as a challenge (see EncodeChallenge).
func NewChallenge() (challenge, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	challenge, hash = EncodeChallenge(b)
	return challenge, hash, nil
}

// EncodeChallenge returns the bytes a device must sign as standard base64 (what clients
// receive) and their hex SHA-256 (what is stored, and the digest the signature is
// checked against: the challenge itself is never kept).
func EncodeChallenge(raw []byte) (challenge, hash string) {
	sum := sha256.Sum256(raw)
	return base64.StdEncoding.EncodeToString(raw), hex.EncodeToString(sum[:])
}

// VerifyChallenge checks signedChallenge (base64) over the challenge whose SHA-256 (hex)
// was stored, with a device's stored key (SPKI PEM) of algorithm alg.
func VerifyChallenge(publicKeyPEM, alg, challengeHash, signedChallenge string) error {
	pub, _, err := ParsePublicKey(publicKeyPEM, alg)
	if err != nil {
		return ErrSignature
	}
	digest, err := hex.DecodeString(challengeHash)
	if err != nil {
		return ErrSignature
	}
	return VerifyEncoded(pub, alg, digest, signedChallenge)
}
