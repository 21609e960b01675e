// Package config reads the service's configuration from the environment,
// once, into one validated value shared by the Lambda and the CLI.
package config

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"decnet-attribution/internal/attribution"
)

// MinObservationTTLDays keeps observations longer than a message can live
// in the template's queues: 4 days in the observation queue plus 14 in its
// dead-letter queue, so a message redriven once from the dead-letter queue
// still finds its observation and is not counted twice.
const MinObservationTTLDays = 18

// Config is the service's configuration.
type Config struct {
	IdentitiesTable    string
	ObservationsTable  string
	StatesTable        string
	EventBusName       string
	DeadLetterQueueURL string // optional: where invalid messages go at once
	ObservationTTL     time.Duration
	Concurrency        int
	Registry           attribution.Registry
	Thresholds         attribution.Thresholds
	// CacheBytes bounds the warm cache: an eighth of the function's memory
	// (AWS_LAMBDA_FUNCTION_MEMORY_SIZE), since a cached record takes a few
	// times its encoded size in memory and the garbage collector needs room.
	CacheBytes int64
	// LogLevel is the function's application log level, as Lambda sets it
	// (AWS_LAMBDA_LOG_LEVEL); metric lines carry it to pass the filter.
	LogLevel string
}

// CacheShareOfMemory is the share of the function's memory the warm cache
// may count (as encoded bytes).
const CacheShareOfMemory = 8

// FromEnv reads the configuration; every problem is reported, by name.
func FromEnv(lookup func(string) (string, bool)) (Config, error) {
	get := func(name string) string {
		v, _ := lookup(name)
		return v
	}
	var errs []error
	required := func(name string) string {
		v := get(name)
		if v == "" {
			errs = append(errs, fmt.Errorf("%s: is required", name))
		}
		return v
	}
	c := Config{
		IdentitiesTable:    required("IDENTITIES_TABLE"),
		ObservationsTable:  required("OBSERVATIONS_TABLE"),
		StatesTable:        required("STATES_TABLE"),
		EventBusName:       required("EVENT_BUS_NAME"),
		DeadLetterQueueURL: get("DEAD_LETTER_QUEUE_URL"),
		LogLevel:           get("AWS_LAMBDA_LOG_LEVEL"),
		Concurrency:        4,
	}
	if raw := get("OBSERVATION_TTL_DAYS"); raw != "" {
		days, err := strconv.Atoi(raw)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("OBSERVATION_TTL_DAYS: want a whole number of days, got %q", raw))
		case days != 0 && days < MinObservationTTLDays:
			errs = append(errs, fmt.Errorf("OBSERVATION_TTL_DAYS: must be 0 (keep forever) or at least %d, longer than a message can live in the queue and its dead-letter queue, got %d", MinObservationTTLDays, days))
		default:
			c.ObservationTTL = time.Duration(days) * 24 * time.Hour
		}
	}
	if raw := get("ATTRIBUTION_CONCURRENCY"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > 64 {
			errs = append(errs, fmt.Errorf("ATTRIBUTION_CONCURRENCY: want 1 to 64, got %q", raw))
		} else {
			c.Concurrency = n
		}
	}
	if raw := get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"); raw != "" {
		mb, err := strconv.Atoi(raw)
		if err != nil || mb < 1 {
			errs = append(errs, fmt.Errorf("AWS_LAMBDA_FUNCTION_MEMORY_SIZE: want megabytes, got %q", raw))
		} else {
			c.CacheBytes = int64(mb) << 20 / CacheShareOfMemory
		}
	}
	c.Registry = attribution.BuiltinRegistry()
	if raw := get("ATTRIBUTION_REGISTRY"); raw != "" {
		reg, err := c.Registry.WithOverrides([]byte(raw))
		if err != nil {
			errs = append(errs, fmt.Errorf("ATTRIBUTION_REGISTRY: %w", err))
		} else {
			c.Registry = reg
		}
	}
	t, err := attribution.ThresholdsFromEnv(lookup)
	if err != nil {
		errs = append(errs, err)
	}
	c.Thresholds = t
	return c, errors.Join(errs...)
}
