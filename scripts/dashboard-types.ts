// The type a Pro-tonn dashboard must have, built only from Grafana's published schema: the
// dashboard and panel types of @grafana/schema (raw/dashboard), each panel's options and
// field config from its plugin's schema (raw/composable/<plugin>/panelcfg), as Grafana composes
// them, and the Prometheus query of @grafana/prometheus. scripts/check-dashboard-schema checks
// each dashboards/*.json against it with `tsc --strict`; excess-property checks refuse fields
// the schema does not know. Versions: scripts/install-ops-tools.
import type {
  Dashboard,
  FieldConfig,
  FieldConfigSource,
  Panel,
  RowPanel,
} from "@grafana/schema/dist/esm/raw/dashboard/x/dashboard_types.gen";
import type * as Stat from "@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen";
import type * as Table from "@grafana/schema/dist/esm/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen";
import type * as TimeSeries from "@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen";
import type { PromQuery } from "@grafana/prometheus";

// JSON carries an enum's value, not the enum: string enums accept their values (`${E}`);
// numeric literals are already checked against numeric enums.
type Json<T> = T extends string
  ? `${T}`
  : T extends number | boolean | null | undefined
    ? T
    : T extends Array<infer U>
      ? Array<Json<U>>
      : T extends object
        ? { [K in keyof T]: Json<T[K]> }
        : T;

// A panel of one plugin: Grafana's Panel with that plugin's Options and FieldConfig (`custom`)
// in place of the untyped records, and Prometheus queries as targets.
type PluginPanel<Type extends string, Options, Custom> = Omit<
  Panel,
  "type" | "options" | "fieldConfig" | "targets"
> & {
  type: Type;
  options: Options;
  fieldConfig: Omit<FieldConfigSource, "defaults"> & {
    defaults: Omit<FieldConfig, "custom"> & { custom?: Custom };
  };
  targets: PromQuery[];
};

type TypedPanel =
  | PluginPanel<"timeseries", TimeSeries.Options, TimeSeries.FieldConfig>
  | PluginPanel<"stat", Stat.Options, never>
  | PluginPanel<"table", Table.Options, Table.FieldConfig>;

type Row = Omit<RowPanel, "panels"> & { panels: TypedPanel[] };

export type ProtonnDashboard = Json<
  Omit<Dashboard, "panels"> & { panels: Array<TypedPanel | Row> }
>;
