package schema

import (
	"bytes"
	"fmt"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"decnet-attribution/internal/attribution"
	"decnet-attribution/schemas"
)

// Validator holds the compiled schemas. It is safe for concurrent use.
type Validator struct {
	message   *jsonschema.Schema
	details   map[string]*jsonschema.Schema // by detail-type
	resources map[string]string             // schema file by detail-type
}

// New compiles the embedded schemas.
func New() (*Validator, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertContent()
	files := []string{schemas.IdentityEvent, schemas.ObservationMessage, schemas.StateChanged, schemas.MultiActorSuspected, schemas.IdentityRekeyed}
	compiled := make(map[string]*jsonschema.Schema, len(files))
	urls := make(map[string]string, len(files))
	for _, name := range files {
		data, err := schemas.FS.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("read schema %s: %w", name, err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("parse schema %s: %w", name, err)
		}
		// Registered under its $id, so that schemas refer to each other by
		// it, as the published files do.
		urls[name] = name
		if m, ok := doc.(map[string]any); ok {
			if id, ok := m["$id"].(string); ok && id != "" {
				urls[name] = id
			}
		}
		if err := c.AddResource(urls[name], doc); err != nil {
			return nil, fmt.Errorf("add schema %s: %w", name, err)
		}
	}
	for _, name := range files {
		s, err := c.Compile(urls[name])
		if err != nil {
			return nil, fmt.Errorf("compile schema %s: %w", name, err)
		}
		compiled[name] = s
	}
	return &Validator{
		message: compiled[schemas.ObservationMessage],
		details: map[string]*jsonschema.Schema{
			attribution.EventStateChanged:        compiled[schemas.StateChanged],
			attribution.EventMultiActorSuspected: compiled[schemas.MultiActorSuspected],
			attribution.EventIdentityRekeyed:     compiled[schemas.IdentityRekeyed],
		},
		resources: map[string]string{
			attribution.EventStateChanged:        schemas.StateChanged,
			attribution.EventMultiActorSuspected: schemas.MultiActorSuspected,
			attribution.EventIdentityRekeyed:     schemas.IdentityRekeyed,
		},
	}, nil
}

// Message validates a message body of the observation queue: an
// observation or an identity event.
func (v *Validator) Message(body []byte) error {
	return validate(v.message, schemas.ObservationMessage, body)
}

// Detail validates the detail of an event of the given detail-type.
func (v *Validator) Detail(detailType string, detail []byte) error {
	s, ok := v.details[detailType]
	if !ok {
		return fmt.Errorf("no schema for detail-type %q", detailType)
	}
	return validate(s, v.resources[detailType], detail)
}

func validate(s *jsonschema.Schema, name string, data []byte) error {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%s: not JSON: %w", name, err)
	}
	if err := s.Validate(doc); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
