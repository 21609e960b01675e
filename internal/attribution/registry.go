package attribution

import (
	"encoding/json"
	"fmt"
	"sort"
)

// Kind is how a primitive's values are merged.
type Kind string

// The three mergers.
const (
	Categorical Kind = "categorical"
	Numeric     Kind = "numeric"
	Hash        Kind = "hash"
)

// ParseKind reads a kind name.
func ParseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case Categorical, Numeric, Hash:
		return k, nil
	}
	return "", fmt.Errorf("unknown value kind %q (want categorical, numeric or hash)", s)
}

// Registry maps primitive names to their value kinds. A primitive it does
// not name is categorical.
type Registry map[string]Kind

// Kind returns the value kind of primitive.
func (r Registry) Kind(primitive string) Kind {
	if k, ok := r[primitive]; ok {
		return k
	}
	return Categorical
}

// builtinKinds lists the BEHAVE primitives whose kind is not categorical;
// the extractors emit string levels for everything else.
var builtinKinds = map[string]Kind{
	"motor.digraph_simhash":           Hash,
	"toolchain.tls.jarm_server":       Hash,
	"toolchain.ssh.hassh_client":      Hash,
	"toolchain.c2.beacon_interval_ms": Numeric,
}

// builtinCategorical lists catalogue primitives that are categorical,
// named so the catalogue documents them; unknown names are categorical too.
var builtinCategorical = []string{
	"motor.input_modality",
	"motor.paste_burst_rate",
	"motor.typing_cadence",
	"motor.correction_rate",
	"cognitive.feedback_loop_engagement",
	"cognitive.command_planning",
	"cognitive.error_recovery",
	"environmental.shell_familiarity",
	"environmental.locale",
	"operational.tool_transfer_method",
	"operational.persistence_habit",
	"temporal.session_cadence",
	"temporal.active_hours",
	"emotional_valence.frustration",
}

// BuiltinRegistry returns the built-in catalogue.
func BuiltinRegistry() Registry {
	r := make(Registry, len(builtinKinds)+len(builtinCategorical))
	for _, p := range builtinCategorical {
		r[p] = Categorical
	}
	for p, k := range builtinKinds {
		r[p] = k
	}
	return r
}

// WithOverrides returns a copy of r with the kinds of a JSON object
// {"primitive": "categorical|numeric|hash"} applied on top.
func (r Registry) WithOverrides(data []byte) (Registry, error) {
	var raw map[string]string
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, Invalidf("registry", "want a JSON object of primitive to kind: %v", err)
	}
	out := make(Registry, len(r)+len(raw))
	for p, k := range r {
		out[p] = k
	}
	names := make([]string, 0, len(raw))
	for p := range raw {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, p := range names {
		if err := ValidatePrimitive(p); err != nil {
			return nil, Invalidf("registry", "primitive %q: %v", p, err)
		}
		k, err := ParseKind(raw[p])
		if err != nil {
			return nil, Invalidf("registry", "primitive %q: %v", p, err)
		}
		out[p] = k
	}
	return out, nil
}
