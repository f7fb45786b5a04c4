/**
 * jupyterlab-dockermagic: a `%%docker_js` cell is highlighted as JavaScript.
 *
 * JupyterLab 4 highlights every code cell of a Python kernel with its
 * `ipython` language (Python's Lezer parser). This plugin extends that
 * language in JupyterLab's editor language registry: when the `ipython`
 * language support is loaded (or if it already is), the registry entry hands
 * out `withCellMagics(...)` of it instead (see `cellmagic.ts`), so every
 * editor that asks for IPython (notebook cells, consoles) gets it, and a cell
 * whose first line is one of dockermagic's cell magics has its body
 * highlighted in the language that `languages.json` names, loaded from the
 * same registry (nothing of CodeMirror's languages is bundled here).
 *
 * `languages.json` is the table: dockermagic's languages by runner name, with
 * the registry language (`codemirror`), the names `%%docker NAME` accepts and
 * the language's own magics. A new runner whose language the registry knows
 * gets a row there; tests/unit/test_labextension.py checks the table against
 * the runners registered in the Python package.
 */

import type { LanguageSupport } from '@codemirror/language';
import type { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { IEditorLanguageRegistry } from '@jupyterlab/codemirror';

import type { CellMagicTable } from './cellmagic';
import { registryResolver, withCellMagics } from './cellmagic';
import languages from './languages.json';

/** The MIME type of the language that JupyterLab gives a Python kernel's cells. */
const IPYTHON = 'text/x-ipython';

function activate(app: JupyterFrontEnd, registry: IEditorLanguageRegistry): void {
  const spec = registry.findByMIME(IPYTHON);
  if (!spec) {
    console.warn('jupyterlab-dockermagic: JupyterLab has no IPython language to extend');
    return;
  }
  const table = languages as CellMagicTable;
  const resolve = registryResolver(
    name => registry.findByName(name),
    name => registry.getLanguage(name)
  );
  // The entry's `support` is set when it loads (by CodeMirror's
  // LanguageDescription and by the registry); whoever sets it, whoever reads
  // it gets IPython with the cell magics, made once per loaded support.
  let base: LanguageSupport | undefined = spec.support;
  let wrapped = base && withCellMagics(base, table, resolve);
  Object.defineProperty(spec, 'support', {
    configurable: true,
    enumerable: true,
    get: () => wrapped,
    set: (value: LanguageSupport | undefined) => {
      if (value !== base && value !== wrapped) {
        base = value;
        wrapped = value && withCellMagics(value, table, resolve);
      }
    }
  });
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyterlab-dockermagic:cell-magics',
  description: "Highlights the body of dockermagic's cell magics (%%docker_js...) in its language.",
  autoStart: true,
  requires: [IEditorLanguageRegistry],
  activate
};

export default plugin;
