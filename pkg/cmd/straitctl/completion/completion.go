// Package completion is "straitctl completion": shell completion scripts
// from cobra's generators.
package completion

import (
	"fmt"

	"github.com/spf13/cobra"
)

// NewCommand returns the completion command.
func NewCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print a shell completion script",
		Long: `completion prints a script that makes the shell complete straitctl's commands,
flags and arguments (show's nouns, -o's formats). Load it in the current
shell, or install it where the shell loads completions from.`,
		Example: `  source <(straitctl completion bash)
  straitctl completion bash > /etc/bash_completion.d/straitctl
  straitctl completion zsh > "${fpath[1]}/_straitctl"
  straitctl completion fish > ~/.config/fish/completions/straitctl.fish`,
		Args:      cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs),
		ValidArgs: []string{"bash", "zsh", "fish"},
		RunE: func(cmd *cobra.Command, args []string) error {
			root, out := cmd.Root(), cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			}
			return fmt.Errorf("completion %q: want bash, zsh or fish", args[0])
		},
	}
}
