package devicekey

import "github.com/pvpipe/pvauth/x/secretbox"

// fcmAAD binds an encrypted FCM token to its device: a token copied to another row does
// not decrypt.
func fcmAAD(deviceID string) []byte { return []byte("fcm:" + deviceID) }

// SealFCMToken encrypts a device's FCM token for storage.
func SealFCMToken(box *secretbox.Box, deviceID, token string) (string, error) {
	return box.Seal([]byte(token), fcmAAD(deviceID))
}

// DecryptFCMToken returns a device's FCM token in clear ("" when none or unreadable).
func DecryptFCMToken(box *secretbox.Box, d *Device) string {
	if d.FCMToken == nil {
		return ""
	}
	pt, err := box.Open(*d.FCMToken, fcmAAD(d.ID))
	if err != nil {
		return ""
	}
	return string(pt)
}
