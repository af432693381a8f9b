package confirmation

import (
	"context"
	"encoding/json"
	"time"
)

// StatusView is the status of a confirmation (status, events, admin get).
type StatusView struct {
	ConfirmationID string          `json:"confirmationId"`
	UserID         *int64          `json:"userId,omitempty"`
	Status         string          `json:"status"`
	ActionType     string          `json:"actionType"`
	ActionPayload  json.RawMessage `json:"actionPayload"`
	ActionHash     string          `json:"actionHash"`
	CreatedAt      time.Time       `json:"createdAt"`
	ExpiresAt      time.Time       `json:"expiresAt"`
	UpdatedAt      time.Time       `json:"updatedAt"`
	ApprovedAt     *time.Time      `json:"approvedAt"`
	DeviceID       *string         `json:"deviceId"`
	ConsumedAt     *time.Time      `json:"consumedAt"`
	Receipt        string          `json:"receipt,omitempty"`
}

// View is what status, events and the admin port show of c; the receipt is there while
// c is approved.
func (s *Service) View(c *Confirmation, now time.Time) (StatusView, error) {
	v := StatusView{
		ConfirmationID: c.ID, Status: c.EffectiveStatus(now), ActionType: c.ActionType, ActionPayload: c.Payload(),
		ActionHash: c.Hash(), CreatedAt: c.CreatedAt, ExpiresAt: c.ExpiresAt, UpdatedAt: c.UpdatedAt,
		ApprovedAt: c.ApprovedAt, DeviceID: c.DeviceID, ConsumedAt: c.ConsumedAt,
	}
	var err error
	v.Receipt, err = s.Receipt(c)
	return v, err
}

// GetView is Get and View at the time of reading: the status endpoints' read.
func (s *Service) GetView(ctx context.Context, userID int64, id string) (*Confirmation, StatusView, error) {
	c, err := s.Get(ctx, userID, id)
	if err != nil {
		return nil, StatusView{}, err
	}
	v, err := s.View(c, time.Now())
	return c, v, err
}
