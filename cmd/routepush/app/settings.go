package app

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// A setting is declared once, by a call of add in the flag struct of the
// verbs that read it: the flag (name, shorthand, default, help) bound to
// the field that holds its value. Unless marked flagOnly, the same name is
// a key of the config file and, as ROUTEPUSH_<NAME> with '-' as '_', an
// environment variable; loadSettings resolves them into the field.

// mark is what a setting is besides a flag.
type mark int

const (
	// flagOnly: the command line alone sets it (no config key, no
	// ROUTEPUSH_* variable).
	flagOnly mark = iota + 1
	// carried: it chooses the nodes or how to reach them, so the
	// `routepush rollback` printed after an abandoned rollback repeats it.
	carried
)

// Flag annotations: a setting's marks, where the command tree can read
// them (configKeys, carriedFlags).
const (
	configKeyAnnotation = "routepush/config-key"
	carriedAnnotation   = "routepush/carried"
)

// add declares a setting on fs: define is fs's XxxVarP for its type.
func add[T any](fs *pflag.FlagSet, define func(p *T, name, short string, value T, usage string),
	p *T, name, short string, value T, usage string, marks ...mark) {
	define(p, name, short, value, usage)
	if !slices.Contains(marks, flagOnly) {
		_ = fs.SetAnnotation(name, configKeyAnnotation, []string{"true"})
	}
	if slices.Contains(marks, carried) {
		_ = fs.SetAnnotation(name, carriedAnnotation, []string{"true"})
	}
}

func annotated(f *pflag.Flag, key string) bool {
	_, ok := f.Annotations[key]
	return ok
}

// loadSettings resolves the settings of cmd into their fields: a flag
// given on the command line, else its ROUTEPUSH_* variable, else its key
// in the config file (--config), else its default. A config key that no
// verb declares is an error; one that only other verbs read is ignored.
func loadSettings(cmd *cobra.Command) error {
	v := viper.New()
	v.SetEnvPrefix("ROUTEPUSH")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	var keys []*pflag.Flag
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if annotated(f, configKeyAnnotation) {
			keys = append(keys, f)
		}
	})
	for _, f := range keys {
		if err := v.BindPFlag(f.Name, f); err != nil {
			return err
		}
	}
	if path, _ := cmd.Flags().GetString("config"); path != "" {
		v.SetConfigFile(path)
		if err := v.ReadInConfig(); err != nil {
			return fmt.Errorf("failed to read config %s: %w", path, err)
		}
		known := configKeys(cmd.Root())
		for _, k := range v.AllKeys() {
			if !slices.Contains(known, k) {
				return fmt.Errorf("config %s: unknown key %q (known: %s)", path, k, strings.Join(known, ", "))
			}
		}
	}
	for _, f := range keys {
		if err := setResolved(v, f); err != nil {
			return fmt.Errorf("--%s: %w", f.Name, err)
		}
	}
	return nil
}

// setResolved stores viper's value of f (flag, environment, config file or
// default) in f's field, read as viper reads a value of f's type. It does
// not mark f changed: Changed still means "given on the command line".
func setResolved(v *viper.Viper, f *pflag.Flag) error {
	var s string
	switch f.Value.Type() {
	case "stringSlice":
		return f.Value.(pflag.SliceValue).Replace(v.GetStringSlice(f.Name))
	case "bool":
		s = strconv.FormatBool(v.GetBool(f.Name))
	case "int":
		s = strconv.Itoa(v.GetInt(f.Name))
	case "int64":
		s = strconv.FormatInt(v.GetInt64(f.Name), 10)
	case "duration":
		s = v.GetDuration(f.Name).String()
	default:
		s = v.GetString(f.Name)
	}
	return f.Value.Set(s)
}

// configKeys are the keys a config file may hold: the settings of every
// verb under root, sorted.
func configKeys(root *cobra.Command) []string {
	var keys []string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if annotated(f, configKeyAnnotation) && !slices.Contains(keys, f.Name) {
				keys = append(keys, f.Name)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	slices.Sort(keys)
	return keys
}

// carriedFlags are fs's carried settings as a command line may spell them
// ("--name", "-x"), each with whether the next argument can be its value.
func carriedFlags(fs *pflag.FlagSet) map[string]bool {
	m := map[string]bool{}
	fs.VisitAll(func(f *pflag.Flag) {
		if !annotated(f, carriedAnnotation) {
			return
		}
		takesValue := f.NoOptDefVal == "" // a bool flag's value needs "="
		m["--"+f.Name] = takesValue
		if f.Shorthand != "" {
			m["-"+f.Shorthand] = takesValue
		}
	})
	return m
}
