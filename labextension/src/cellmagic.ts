/**
 * A cell magic's body highlighted in its own language.
 *
 * `withCellMagics(ipython, ...)` returns IPython's language support with one
 * change: its parser first reads the cell's first line. When that line is one
 * of dockermagic's cell magics (`%%docker_js`, `%%docker javascript`... as the
 * table in `languages.json` says), the cell becomes a small tree of its own:
 * the magic line, tokenized as a magic (its name, options, numbers, strings),
 * and the lines after it as a `CellBody` node on which the body's language is
 * mounted with Lezer's `parseMixed` (as Markdown mounts a fenced block's
 * language). Any other cell is handed to IPython's parser unchanged, so Python
 * cells, and cells of other magics, keep exactly the tree and the highlighting
 * they had.
 */

import {
  Language,
  languageDataProp,
  LanguageSupport,
  ParseContext
} from '@codemirror/language';
import type { Input, PartialParse, TreeFragment } from '@lezer/common';
import { NodeSet, NodeType, parseMixed, Parser, Tree } from '@lezer/common';
import { styleTags, tags } from '@lezer/highlight';

/** One dockermagic language, as `languages.json` describes it. */
export interface ICellMagicLanguage {
  /** The name of a language in JupyterLab's editor language registry, or null. */
  codemirror: string | null;
  /** dockermagic's name of the language and its aliases (`%%docker NAME`). */
  names: string[];
  /** The language's own cell magics, without the `%%` (`%%docker_js`). */
  magics: string[];
}

/** dockermagic's languages, by the runner's language name. */
export type CellMagicTable = Record<string, ICellMagicLanguage>;

/** What a cell's first line asks for. */
export interface IMagicLine {
  /** The registry name of the body's language. */
  language: string;
  /** The length of the magic's name: `%%docker_js`, `%%docker javascript`. */
  command: number;
}

/** Finds the parser of a registry language: null when the registry has none. */
export type ParserResolver = (language: string) => Parser | null;

const OWN_MAGIC = /^%%(docker_\w+)(?=\s|$)/;
const DOCKER_MAGIC = /^%%docker[ \t]+(\S+)(?=\s|$)/;
/** Option, quoted string, number or word of a magic line. */
const WORD = /"[^"]*"?|'[^']*'?|\S+/g;

/**
 * The language a cell's first line asks for: `%%docker_<magic>` by the
 * table's `magics`, `%%docker <name>` by its `names` (in any case, as
 * dockermagic reads them); null for any other line.
 */
export function matchMagicLine(line: string, table: CellMagicTable): IMagicLine | null {
  const own = OWN_MAGIC.exec(line);
  const docker = own ? null : DOCKER_MAGIC.exec(line);
  const found = own ?? docker;
  if (!found) {
    return null;
  }
  const name = own ? found[1] : found[1].toLowerCase();
  for (const entry of Object.values(table)) {
    const names = own ? entry.magics : entry.names;
    if (entry.codemirror && names.includes(name)) {
      return { language: entry.codemirror, command: found[0].length };
    }
  }
  return null;
}

/** The node types of a magic cell; the top one carries the base language's data. */
function magicNodeSet(base: Language): NodeSet {
  const names = ['MagicCommand', 'MagicOption', 'MagicNumber', 'MagicString', 'MagicArgument'];
  const types = [
    NodeType.define({
      id: 0,
      name: 'DockerMagicCell',
      top: true,
      props: [[languageDataProp, base.data]]
    }),
    ...names.map((name, i) => NodeType.define({ id: i + 1, name })),
    NodeType.define({ id: names.length + 1, name: 'CellBody' })
  ];
  return new NodeSet(types).extend(
    styleTags({
      MagicCommand: tags.meta,
      MagicOption: tags.attributeName,
      MagicNumber: tags.number,
      MagicString: tags.string
    })
  );
}

/** A finished parse: the magic cell's tree is built at once (a line and a node). */
class MagicCellParse implements PartialParse {
  parsedPos: number;
  stoppedAt: number | null = null;

  constructor(
    private readonly tree: Tree,
    from: number,
    private readonly to: number
  ) {
    this.parsedPos = from;
  }

  advance(): Tree {
    this.parsedPos = this.to;
    return this.tree;
  }

  stopAt(pos: number): void {
    this.stoppedAt = pos;
  }
}

/** IPython's parser, with dockermagic's cell magics parsed as above. */
class CellMagicParser extends Parser {
  private readonly body: NodeType;

  constructor(
    private readonly base: Parser,
    private readonly nodes: NodeSet,
    private readonly table: CellMagicTable,
    private readonly resolve: ParserResolver
  ) {
    super();
    this.body = nodes.types[nodes.types.length - 1];
  }

  createParse(
    input: Input,
    fragments: readonly TreeFragment[],
    ranges: readonly { from: number; to: number }[]
  ): PartialParse {
    // A cell is one range; IPython nested in something else (a Markdown
    // block, several ranges) is left to IPython's own parser.
    if (ranges.length === 1) {
      const { from, to } = ranges[0];
      const line = firstLine(input, from, to);
      const magic = line.startsWith('%%docker') ? matchMagicLine(line, this.table) : null;
      const inner = magic ? this.resolve(magic.language) : null;
      if (magic && inner) {
        const tree = this.build(line, magic, from, to);
        const body = this.body;
        const wrap = parseMixed(node => (node.type === body ? { parser: inner } : null));
        return wrap(new MagicCellParse(tree, from, to), input, fragments, ranges);
      }
    }
    return this.base.createParse(input, fragments, ranges);
  }

  /** The magic line's tokens, then the body; positions relative to `from`. */
  private build(line: string, magic: IMagicLine, from: number, to: number): Tree {
    const types = this.nodes.types;
    const children: Tree[] = [];
    const positions: number[] = [];
    const add = (type: NodeType, start: number, end: number): void => {
      children.push(new Tree(type, [], [], end - start));
      positions.push(start);
    };
    add(types[1], 0, magic.command);
    WORD.lastIndex = magic.command;
    for (let word = WORD.exec(line); word; word = WORD.exec(line)) {
      const text = word[0];
      const type = /^["']/.test(text)
        ? types[4]
        : /^\d[\d.]*[a-zA-Z]*$/.test(text)
          ? types[3]
          : /^--?[A-Za-z]/.test(text)
            ? types[2]
            : types[5];
      add(type, word.index, word.index + text.length);
    }
    const bodyStart = line.length + 1;
    if (from + bodyStart < to) {
      add(this.body, bodyStart, to - from);
    }
    return new Tree(types[0], children, positions, to - from);
  }
}

/** The text of the first line of `from..to`, read in small pieces. */
function firstLine(input: Input, from: number, to: number): string {
  let text = '';
  for (let pos = from; pos < to; ) {
    const end = Math.min(to, pos + 256);
    const chunk = input.read(pos, end);
    const newline = chunk.indexOf('\n');
    if (newline >= 0) {
      return text + chunk.slice(0, newline);
    }
    text += chunk;
    pos = end;
  }
  return text;
}

/**
 * Parsers of registry languages, loaded on first use: until a language has
 * loaded, its bodies are skipped, and CodeMirror parses them again once it has.
 */
export function registryResolver(
  find: (language: string) => { support?: LanguageSupport } | null,
  load: (language: string) => Promise<unknown>
): ParserResolver {
  const loading = new Map<string, Promise<unknown>>();
  return (language: string): Parser | null => {
    const spec = find(language);
    if (!spec) {
      return null;
    }
    if (spec.support) {
      return spec.support.language.parser;
    }
    let pending = loading.get(language);
    if (!pending) {
      pending = load(language).catch(error => {
        console.warn(`jupyterlab-dockermagic: cannot load ${language}`, error);
      });
      loading.set(language, pending);
    }
    return ParseContext.getSkippingParser(pending);
  };
}

/**
 * IPython's language support, with dockermagic's cell magics highlighted in
 * their own language; everything else of `ipython` (its name, its language
 * data, its extensions) is kept.
 */
export function withCellMagics(
  ipython: LanguageSupport,
  table: CellMagicTable,
  resolve: ParserResolver
): LanguageSupport {
  const base = ipython.language;
  const parser = new CellMagicParser(base.parser, magicNodeSet(base), table, resolve);
  const language = new Language(base.data, parser, [], base.name);
  return new LanguageSupport(language, ipython.support);
}
