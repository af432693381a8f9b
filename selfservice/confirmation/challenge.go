package confirmation

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"github.com/gowebpki/jcs"
)

// ChallengeVersion is the first line of every confirmation challenge.
const ChallengeVersion = "pvauth-confirmation-v1"

// ActionHash is the base64url (no padding) SHA-256 of the RFC 8785 (JCS) canonical JSON
// of an action payload; an absent payload hashes as {}. A phone app recomputes it over
// the payload it shows, so the user approves what the hash names.
func ActionHash(payload []byte) (string, error) {
	if len(payload) == 0 || string(payload) == "null" {
		payload = []byte("{}")
	}
	canon, err := jcs.Transform(payload)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(canon)
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

// ChallengeText is what the device signs (dynamic linking): six lines joined by "\n"
// with no trailing newline — version, confirmation id, action type, action hash, expiry
// as Unix seconds and a nonce (base64url of 32 random bytes) — so that a signature names
// one action of one confirmation and can approve nothing else.
func ChallengeText(id, actionType, actionHash string, expiresAt time.Time) (string, error) {
	nonce := make([]byte, 32)
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return strings.Join([]string{
		ChallengeVersion, id, actionType, actionHash,
		strconv.FormatInt(expiresAt.Unix(), 10), base64.RawURLEncoding.EncodeToString(nonce),
	}, "\n"), nil
}
